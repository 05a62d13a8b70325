"""Request bodies of the worker's HTTP API (recall, get, forget), validated like every other input."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from streams.contracts import Ident


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecallRequest(_Request):
    """Two-stage recall: top-k_s episodes by similarity, plus k_c temporal neighbours of each hit."""

    query: str = Field(min_length=1, max_length=16_384)
    tenant_id: Ident
    user_id: Ident | None = None
    session_id: Ident | None = None
    k_s: int = Field(5, ge=1, le=100)
    k_c: int = Field(1, ge=0, le=20)
    since: float | None = None
    until: float | None = None


class GetRequest(_Request):
    tenant_id: Ident
    event_ids: list[Ident] = Field(min_length=1, max_length=1000)


class ForgetRequest(_Request):
    tenant_id: Ident
    user_id: Ident
