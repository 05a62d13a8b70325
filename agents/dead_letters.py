"""Send a rejected record to `dead-letters` with its reason and source coordinates."""

from __future__ import annotations

from faust.types import EventT

from streams.codec import dead_letter, encode


async def reject(topics, event: EventT, reason: str, stage: str) -> None:
    """Dead-letter one Faust event (the raw value is kept byte for byte)."""
    message = event.message
    letter = dead_letter(
        message.value, reason, stage=stage, topic=message.topic,
        partition=message.partition, offset=message.offset, key=message.key,
    )
    await topics.dead_letters.send(key=message.key, value=encode(letter))
