"""The records' embeddings for the evaluations, by the pipeline's embedder (`models.embedder`), cached under
``cache_dir()/eval`` by a hash of the embedder tag and the texts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

__all__ = ["Embed", "cached_embeddings", "default_embedder"]

Embed = Callable[[list[str]], np.ndarray]


def _default_embedder_tag() -> str:
    from memstream.agents.settings import get_settings
    from memstream.models.embedder import MODEL_NAME, resolve_variant

    config = get_settings().embedder
    return f"{MODEL_NAME}-{resolve_variant(config)}-{config.max_length}"


def default_embedder() -> tuple[Embed, str]:
    """The pipeline's embedder (`models.embedder`, as the settings configure it: ``MEMSTREAM_EMBEDDER__*``)
    and a tag naming it for the cache."""
    from memstream.agents.settings import get_settings
    from memstream.models.embedder import Embedder

    return Embedder(get_settings().embedder).embed, _default_embedder_tag()


def cached_embeddings(texts: list[str], embed: Embed | None = None, tag: str | None = None) -> np.ndarray:
    """Embeddings of ``texts``, cached under ``cache_dir()/eval`` by a hash of the embedder tag and texts.

    Without ``embed`` the default embedder is used (and only loaded when the cache misses).
    """
    from memstream.models.assets import cache_dir

    if tag is None:
        tag = _default_embedder_tag() if embed is None else "custom"
    digest = hashlib.sha256(("\x00".join([tag, *texts])).encode()).hexdigest()[:24]
    path = cache_dir() / "eval" / f"segmentation-{digest}.npy"
    if path.exists():
        vectors = np.load(path)
        if vectors.shape[0] == len(texts):
            return vectors
    if embed is None:
        embed, _ = default_embedder()
    vectors = np.asarray(embed(texts), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part.npy")
    np.save(tmp, vectors)
    tmp.replace(path)
    return vectors
