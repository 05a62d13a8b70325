"""Forget that survives replay: every forgotten (tenant, user) is recorded on the compacted ``forgotten`` topic
with the time it was forgotten. Workers keep that table in memory and drop, at every stage, any record of
that user dated (its own ``ts``; an episode by its first event) at or before that time — so a replay of the
raw topics (offsets reset, a new consumer group, a reindex) cannot bring the user's memory back, while what
the user does after the forget is remembered again. Raw topics keep their records until their retention
deletes them; the forget record outlives them (compaction keeps it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from memstream.streams.contracts import Ident
from memstream.streams.control import publish_control
from memstream.streams.settings import KafkaSettings

__all__ = ["ForgetRecord", "record_forget"]


class ForgetRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: Ident
    user_id: Ident
    forgotten_at: float = Field(ge=0, allow_inf_nan=False, description="Records dated at or before this are dropped")

    @property
    def key(self) -> str:
        return f"{self.tenant_id}/{self.user_id}"


async def record_forget(kafka: KafkaSettings, record: ForgetRecord) -> None:
    """Write the forget durably (acks=all) before anything is erased."""
    await publish_control(kafka, kafka.topics.forgotten, record.key, record.model_dump_json().encode())
