"""Stage 2: embed validated interactions in batches and forward event + float32 vector to `embedded`."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import faust

from agents.dead_letters import reject
from streams.codec import InvalidRecord, decode_interaction, encode_with_vector
from streams.settings import Settings

STAGE = "embed"
log = logging.getLogger(__name__)


def register(app: faust.App, topics, settings: Settings) -> None:
    from models.embedder import Embedder

    stage = settings.embed
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memstream-embed")
    holder: dict[str, Embedder] = {}

    def embed_texts(texts: list[str]):
        if "embedder" not in holder:  # built lazily in the executor: model load never blocks the loop
            holder["embedder"] = Embedder(settings.embedder)
        return holder["embedder"].embed(texts)

    @app.agent(topics.validated, name=f"{settings.worker.app_id}.embed")
    async def embed(stream: faust.StreamT) -> None:
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(stage.max_batch, within=stage.max_wait_s):
            records, accepted = [], []
            for event in events:
                try:
                    records.append(decode_interaction(event.value))
                    accepted.append(event)
                except InvalidRecord as exc:  # only a foreign writer on an internal topic can cause this
                    await reject(topics, event, exc.reason, STAGE)
            if not records:
                continue
            vectors = await loop.run_in_executor(executor, embed_texts, [r.text for r in records])
            for record, vector in zip(records, vectors):
                await topics.embedded.send(key=record.key, value=encode_with_vector(record, vector))
