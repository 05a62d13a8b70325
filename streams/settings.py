"""Settings of the wire: how a client or a worker reaches Kafka. Environment variables use the prefix
``MEMSTREAM_``; nested groups use ``__`` (e.g. ``MEMSTREAM_KAFKA__BOOTSTRAP=broker:9092``). The worker's
settings (``memstream.agents.settings``) hold this same group beside its own."""

from __future__ import annotations

import ssl
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from memstream.streams.topics import TopicNames


class KafkaSettings(BaseModel):
    """How to reach the broker, with optional SASL/SSL."""

    bootstrap: str = Field("127.0.0.1:9092", description="host:port[,host:port…] of the Kafka brokers")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How clients talk to the brokers"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field("PLAIN", description="SASL mechanism")
    sasl_username: str | None = Field(None, description="SASL user")
    sasl_password: SecretStr | None = Field(None, description="SASL password (never printed)")
    ssl_cafile: Path | None = Field(None, description="CA bundle to verify the brokers")
    ssl_certfile: Path | None = Field(None, description="Client certificate (mutual TLS)")
    ssl_keyfile: Path | None = Field(None, description="Client key (mutual TLS)")
    partitions: int = Field(8, ge=1, description="Partitions of every memstream topic (= max parallel workers)")
    replication_factor: int = Field(1, ge=1, description="Replication factor of topics memstream creates")
    topic_prefix: str = Field("memstream.", description="Prefix of every topic name (one deployment per prefix)")
    producer_linger_ms: int = Field(
        5,
        ge=0,
        le=1000,
        description="How long a worker's producer waits to fill a batch (Kafka 4's default): "
        "fewer, fuller requests, for a few ms of latency per hop",
    )

    @property
    def topics(self) -> TopicNames:
        return TopicNames(self.topic_prefix)

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.security_protocol not in ("SSL", "SASL_SSL"):
            return None
        context = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        if self.ssl_certfile:
            context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None)
        return context

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka producers, consumers and admin clients."""
        kwargs: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL"):
            kwargs.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password.get_secret_value() if self.sasl_password else None,
            )
        context = self.ssl_context()
        if context is not None:
            kwargs["ssl_context"] = context
        return kwargs


class ApiSettings(BaseModel):
    """Where a client finds a worker's HTTP API (``MemoryClient``, ``memstream recall --worker``)."""

    url: str = Field("http://127.0.0.1:6066", description="Base URL of a worker's HTTP API")
    timeout_s: float = Field(30.0, gt=0, description="Seconds a client waits for an answer")
    key: SecretStr | None = Field(
        None, description="Credential sent as `Authorization: Bearer …`: an API key (memstream keys create) or a JWT"
    )


class ClientSettings(BaseSettings):
    """What a client process (publisher, subscriber, HTTP client) reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="MEMSTREAM_", env_nested_delimiter="__", extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)


@lru_cache(maxsize=1)
def client_settings() -> ClientSettings:
    """A client's settings, read once from the environment (``MEMSTREAM_KAFKA__*``, ``MEMSTREAM_API__*``)."""
    return ClientSettings()


def kafka_settings() -> KafkaSettings:
    """The Kafka settings read once from the environment (``MEMSTREAM_KAFKA__*``)."""
    return client_settings().kafka
