"""The worker's settings: every config value's one home. Environment variables use the prefix ``MEMSTREAM_``;
nested groups use ``__`` (e.g. ``MEMSTREAM_EMBEDDER__VARIANT=int8``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from memstream.agents.store.base import StoreConfig
from memstream.agents.store.faults import StoreFaults
from memstream.models.compensation import CompensationConfig
from memstream.models.embedder import EmbedderConfig
from memstream.models.language_model import LanguageModelConfig
from memstream.models.recall import RecallConfig
from memstream.models.segmentation_config import SegmentationConfig
from memstream.streams.settings import KafkaSettings
from memstream.streams.topics import TopicNames


class WorkerSettings(BaseModel):
    """One worker process: identity, state, web port, validation limits."""

    app_id: str = Field("memstream", description="Faust app id = consumer group; one per deployment")
    state_dir: Path = Field(Path("var/state"), description="RocksDB tables and the embedded store live here")
    table_store: str = Field("rocksdb://", description="Faust table store: rocksdb:// or memory://")
    standby_replicas: int = Field(1, ge=0, description="Standby copies of each table partition on other workers")
    web_port: int = Field(6066, ge=1, le=65535, description="HTTP API (recall, compensate, get, forget, metrics)")
    web_host: str = Field("127.0.0.1", description="Address the HTTP API binds (0.0.0.0 in containers)")
    max_text_chars: int = Field(16_384, ge=1, description="Longer event texts are dead-lettered")
    log_level: str = Field("info", description="Worker log level")
    commit_interval_s: float = Field(
        0.2,
        gt=0,
        le=30,
        description="How often offsets (and, exactly-once, the transaction) are committed; under exactly_once "
        "each stage's output becomes visible downstream only at its commit, so this bounds per-hop latency",
    )
    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once",
        description="at_least_once (default): replays are de-duplicated by event id and point ids are "
        "deterministic, so memory is exactly-once; exactly_once: Kafka transactions (faust-streaming 0.15 "
        "fences producers on rebalance with several workers: single-worker use only)",
    )


class EmbedStageSettings(BaseModel):
    """How the embed agent batches: a batch closes at max_batch events or after max_wait_s, and is embedded
    in chunks that the embedder's thread runs back to back while the worker forwards the finished ones."""

    max_batch: int = Field(
        256,
        ge=1,
        le=4096,
        description="Events taken in one batch at most (under load: the embedder's idle gap "
        "between batches is paid once per batch)",
    )
    max_wait_s: float = Field(
        0.02,
        gt=0,
        le=10,
        description="A partial batch is embedded after this wait (under load batches fill "
        "before it; at low rates it is latency each event pays)",
    )
    chunk: int = Field(
        16,
        ge=1,
        le=4096,
        description="Events per embedder call within a batch: two chunks are queued on the "
        "embedder's thread at a time, and each one is forwarded as soon as it is done",
    )


class SegmentStageSettings(BaseModel):
    """How the segment agent batches, and when an idle session's open episode is sealed without an explicit
    `session_end` event."""

    max_batch: int = Field(
        64,
        ge=1,
        le=4096,
        description="Events segmented per batch at most: each session's state is written once "
        "per batch, and LM surprise scores the whole batch in one model run",
    )
    max_wait_s: float = Field(0.01, gt=0, le=10, description="A partial batch is segmented after this wait")

    idle_seal_s: float = Field(
        180.0,
        gt=0,
        description="Seal a session's episodes after this many idle seconds. Longer than a fail-over: a dead "
        "worker's partitions stall for the Kafka session timeout (60 s) plus the rebalance and catch-up, and a "
        "broker restart about as long, and the idle clock runs from the last batch the session's previous "
        "owner processed, so a shorter wait seals sessions whose next events are still queued (at 30 s the "
        "SIGKILL fault test saw a killed worker's open sessions sealed early on takeover: 58 episodes differed)",
    )
    idle_check_s: float = Field(5.0, gt=0, description="How often the worker looks for idle sessions")
    dedupe_window: int = Field(
        512, ge=2, description="Latest event ids remembered per session, so a replayed event is not applied twice"
    )
    state_cache: int = Field(
        10_000,
        ge=0,
        description="Session states a worker keeps decoded in memory between batches (~30 kB "
        "each; dropped at every rebalance); 0: read every state back from RocksDB",
    )


class IndexStageSettings(BaseModel):
    """How the index agent batches its store writes (at most ``store.upsert_batch`` points per batch)."""

    max_wait_s: float = Field(0.01, gt=0, le=10, description="A partial batch is written after this wait")


class ErrorsStageSettings(BaseModel):
    """The errors agent (feedback → error memory) and the memory `/compensate/` reads by default."""

    backend: Literal["knn", "sketch"] = Field(
        "knn",
        description="knn: exact neighbours in the store's errors collection; sketch: a RACE sketch in the worker, "
        "rebuilt from that collection and fed by this worker's errors agent (O(1) reads)",
    )
    max_batch: int = Field(64, ge=1, le=4096, description="Feedback events per batch (texts embedded together)")
    max_wait_s: float = Field(0.05, gt=0, le=10, description="A partial batch is processed after this many seconds")


class AuthSettings(BaseModel):
    """Who may call the HTTP API. ``keys`` (default): every data route needs ``Authorization: Bearer <credential>``,
    an API key from the ``access`` topic (``memstream keys create``) or, when a public key or JWKS is set, a JWT;
    the tenant (and user) come from the credential. ``none``: no credentials, the body names the tenant; for
    local development only (the worker warns when it serves it beyond loopback)."""

    mode: Literal["keys", "none"] = Field("keys", description="keys: credentials required; none: local development")
    admin_key: SecretStr | None = Field(
        None,
        description="An operator credential with the admin scope over every tenant (requests must name the "
        "tenant); e.g. `openssl rand -hex 32`. Optional: keys from the access topic work without it",
    )
    jwt_public_key_file: Path | None = Field(None, description="PEM public key that verifies JWTs")
    jwt_jwks_url: str | None = Field(None, description="JWKS URL that verifies JWTs (keys fetched and cached)")
    jwt_algorithms: list[str] = Field(["RS256", "ES256", "EdDSA"], description="Accepted JWT signature algorithms")
    jwt_audience: str | None = Field(None, description="Required `aud` of a JWT")
    jwt_issuer: str | None = Field(None, description="Required `iss` of a JWT")
    jwt_tenant_claim: str = Field("tenant_id", description="JWT claim holding the tenant")
    jwt_user_claim: str = Field("user_id", description="JWT claim holding the user (absent: any user of the tenant)")
    jwt_scope_claim: str = Field("scope", description="JWT claim holding scopes (space-separated string or list)")
    keys_ready_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Until the worker has read the access topic to its end it answers 503; "
        "after this long it logs an error each time a request is refused for it",
    )


class HttpSettings(BaseModel):
    """Limits of the HTTP API."""

    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Larger request bodies get a 413")
    rate_limit: str = Field(
        "50/second",
        description="Per-credential limit on recall and compensate (limits' notation, e.g. '50/second', "
        "'1000/minute'); over it: 429 with Retry-After",
    )
    updates_keepalive_s: float = Field(15.0, gt=0, description="A comment line on idle /updates/ streams this often")

    @field_validator("rate_limit")
    @classmethod
    def _parsable(cls, value: str) -> str:
        from limits import parse

        parse(value)  # raises ValueError with the reason
        return value


class Settings(BaseSettings):
    """All of memstream's configuration."""

    model_config = SettingsConfigDict(env_prefix="MEMSTREAM_", env_nested_delimiter="__", extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    embed: EmbedStageSettings = Field(default_factory=EmbedStageSettings)
    segment: SegmentStageSettings = Field(default_factory=SegmentStageSettings)
    segmentation: SegmentationConfig = Field(default_factory=SegmentationConfig)
    index: IndexStageSettings = Field(default_factory=IndexStageSettings)
    lm: LanguageModelConfig = Field(default_factory=LanguageModelConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    store_faults: StoreFaults = Field(
        default_factory=StoreFaults, description="Test/chaos knob: failures injected into the stages' store writes"
    )
    recall: RecallConfig = Field(default_factory=RecallConfig)
    compensation: CompensationConfig = Field(default_factory=CompensationConfig)
    errors: ErrorsStageSettings = Field(default_factory=ErrorsStageSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)

    @property
    def topics(self) -> TopicNames:
        return self.kafka.topics


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once from the environment."""
    return Settings()
