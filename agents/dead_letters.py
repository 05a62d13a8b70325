"""Send a rejected record to `dead-letters` with its reason and source coordinates."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faust.types import EventT

from memstream.streams.codec import dead_letter, encode

if TYPE_CHECKING:
    from memstream.agents.metrics import Metrics


async def reject(topics, event: EventT, reason: str, stage: str, metrics: Metrics | None = None) -> None:
    """Dead-letter one Faust event (the raw value is kept byte for byte)."""
    message = event.message
    letter = dead_letter(
        message.value,
        reason,
        stage=stage,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
    )
    await topics.dead_letters.send(key=message.key, value=encode(letter))
    if metrics is not None:
        metrics.dead_letter(stage)
