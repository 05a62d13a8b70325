"""Request bodies of the worker's HTTP API (recall, compensate, get, forget), validated like every other input.

``tenant_id`` (and ``user_id`` where it is optional) may be left out: the worker takes them from the caller's
credential. Naming a tenant or user the credential does not cover is refused (403), never narrowed silently;
with ``auth.mode=none`` (local development) the tenant must be named."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from memstream.streams.contracts import Features, Ident


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecallRequest(_Request):
    """Recall. ``mode=events`` (default): at most ``budget`` events ranked by hybrid search, each hit
    followed by ``episode_turns`` turns of its episode. ``mode=episodes``: top-k_s episodes by similarity,
    plus k_c temporal neighbours of each hit. Unset fields take the worker's ``recall`` settings."""

    query: str = Field(min_length=1, max_length=16_384)
    tenant_id: Ident | None = None
    user_id: Ident | None = None
    session_id: Ident | None = None
    mode: Literal["events", "episodes"] | None = None
    budget: int | None = Field(None, ge=1, le=1000)
    episode_turns: int | None = Field(None, ge=0, le=50)
    k_s: int = Field(5, ge=1, le=100)
    k_c: int = Field(1, ge=0, le=20)
    since: float | None = None
    until: float | None = None


class GetRequest(_Request):
    tenant_id: Ident | None = None
    event_ids: list[Ident] = Field(min_length=1, max_length=1000)


class ForgetRequest(_Request):
    """Erase one user's memory. ``user_id`` may be left out only by a credential bound to one user."""

    tenant_id: Ident | None = None
    user_id: Ident | None = None


class CompensateRequest(_Request):
    """Compensate one base prediction from the error memory (ReLoop2): features as in a FeedbackEvent."""

    tenant_id: Ident | None = None
    user_id: Ident
    model_version: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        description="Version of the model that made y_base: only its feedback is used."
    )
    y_base: float = Field(ge=0.0, le=1.0, allow_inf_nan=False, description="The base model's prediction.")
    features: Features
    backend: Literal["knn", "sketch"] | None = Field(None, description="Memory to read (default: errors.backend).")


class CompensateBatchRequest(_Request):
    """Many compensate queries in one call (their texts are embedded in one batch)."""

    queries: list[CompensateRequest] = Field(min_length=1, max_length=1000)


class PublishRequest(_Request):
    """Events to publish through a worker (``POST /events/``): interaction or feedback events as their
    contracts define them (a feedback event has a ``prediction``); ``tenant_id`` (and ``user_id`` for a
    user-bound credential) may be left out and come from the credential."""

    events: list[dict[str, Any]] = Field(min_length=1, max_length=1000)
