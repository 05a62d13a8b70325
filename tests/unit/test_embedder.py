"""ONNX MiniLM embedder: parity with sentence-transformers, quantised quality, batching, edge cases.

The reference vectors in tests/fixtures were made once by sentence-transformers (the anchor) from the
same registry weights (tests/fixtures/make_minilm_reference.py). Graphs are built on first use into the
memstream cache (a few seconds for fp32, ~20 s more for int8).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from memstream.models.embedder import Embedder, EmbedderConfig, ensure_model, model_path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def reference() -> tuple[list[str], np.ndarray]:
    sentences = json.loads((FIXTURES / "minilm_sentences.json").read_text())["sentences"]
    vectors = np.load(FIXTURES / "minilm_reference.npz")["embeddings"].astype(np.float32)
    return sentences, vectors


@pytest.fixture(scope="module")
def fp32() -> Embedder:
    return Embedder(EmbedderConfig(variant="fp32", provider="cpu"))


@pytest.fixture(scope="module")
def int8() -> Embedder:
    return Embedder(EmbedderConfig(variant="int8", provider="cpu"))


def test_fp32_matches_sentence_transformers(fp32: Embedder, reference) -> None:
    sentences, expected = reference
    got = fp32.embed(sentences)
    assert got.shape == expected.shape == (len(sentences), 384)
    assert got.dtype == np.float32
    cos = np.sum(got * expected, axis=1)
    assert cos.min() >= 0.9999, f"worst cosine {cos.min():.6f} for {sentences[int(cos.argmin())]!r}"
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_int8_stays_close(int8: Embedder, reference) -> None:
    sentences, expected = reference
    cos = np.sum(int8.embed(sentences) * expected, axis=1)
    assert cos.mean() >= 0.99
    assert cos.min() >= 0.97


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_batch_equals_one_by_one(variant: str, fp32: Embedder, int8: Embedder, reference) -> None:
    embedder = fp32 if variant == "fp32" else int8
    sentences = reference[0][:24]
    batched = embedder.embed(sentences)
    single = np.concatenate([embedder.embed([s]) for s in sentences])
    cos = np.sum(batched * single, axis=1)
    # Both: the same numbers up to float rounding. int8 quantises activations per token, so a text's codes do
    # not depend on its batch (with one scale per batch tensor the worst cosine here was 0.9993).
    assert cos.min() >= 0.99999


def test_int8_vector_does_not_depend_on_the_batch(int8: Embedder, reference) -> None:
    """The same sentence batched with short and with long neighbours gets the same vector: a replay that
    batches differently, or a query embedded alone, sees the vectors the events were stored with."""
    sentences = reference[0]
    target = sentences[0]
    short = [s for s in sentences if len(s) < 40][:7]
    long_ = sorted(sentences, key=len)[-7:] + ["x " * 200]
    a = int8.embed([target, *short])[0]
    b = int8.embed([target, *long_])[0]
    assert float(a @ b) >= 0.99999


def test_auto_variant_is_int8_on_cpu_and_fp32_on_cuda() -> None:
    from memstream.models.embedder import resolve_variant

    assert EmbedderConfig().variant == "auto"
    assert resolve_variant(EmbedderConfig(), "CPUExecutionProvider") == "int8"
    assert resolve_variant(EmbedderConfig(), "CUDAExecutionProvider") == "fp32"
    assert resolve_variant(EmbedderConfig(variant="fp32"), "CPUExecutionProvider") == "fp32"
    assert resolve_variant(EmbedderConfig(variant="int8"), "CUDAExecutionProvider") == "int8"
    assert Embedder(EmbedderConfig(provider="cpu")).variant == "int8"


def test_order_is_kept_when_sorting_by_length(reference) -> None:
    sentences = reference[0][:40]
    sorted_ = Embedder(EmbedderConfig(sort_by_length=True, batch_size=8)).embed(sentences)
    plain = Embedder(EmbedderConfig(sort_by_length=False, batch_size=8)).embed(sentences)
    assert np.sum(sorted_ * plain, axis=1).min() >= 0.99999


def test_empty_and_whitespace_text_is_the_cls_sep_embedding(fp32: Embedder, reference) -> None:
    sentences, expected = reference
    got = fp32.embed(["", "   ", "\n\t"])
    assert np.isfinite(got).all()
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got[1], got[0], atol=1e-6)
    np.testing.assert_allclose(got[2], got[0], atol=1e-6)
    assert float(got[0] @ expected[sentences.index("")]) >= 0.9999  # what sentence-transformers returns


def test_no_texts_and_bad_input(fp32: Embedder) -> None:
    assert fp32.embed([]).shape == (0, fp32.dim)
    with pytest.raises(TypeError):
        fp32.embed("not a list")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        fp32.embed([None])  # type: ignore[list-item]


def test_long_text_is_truncated_not_rejected(fp32: Embedder) -> None:
    text = "word " * 2000
    assert fp32.embed([text]).shape == (1, fp32.dim)


def test_cuda_requested_without_cuda_falls_back_to_cpu(caplog: pytest.LogCaptureFixture) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is available here")
    with caplog.at_level(logging.INFO, logger="memstream.models.embedder"):
        embedder = Embedder(EmbedderConfig(provider="cuda"))
    assert embedder.provider == "CPUExecutionProvider"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("CUDA" in r.getMessage() for r in warnings)
    assert any("CPUExecutionProvider" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_config_validates() -> None:
    with pytest.raises(ValueError):
        EmbedderConfig(variant="fp8")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        EmbedderConfig(threads=0)
    assert EmbedderConfig().model_dump()["max_length"] == 256


def test_corrupt_graph_is_rebuilt(fp32: Embedder) -> None:
    path = ensure_model("fp32")
    assert path == model_path("fp32")
    checksum = path.with_name(path.name + ".sha256")
    good = checksum.read_text()
    checksum.write_text("0" * 64 + good[64:])
    rebuilt = ensure_model("fp32")
    assert rebuilt.with_name(rebuilt.name + ".sha256").read_text() == good


# --- the graph builder on a tiny random BERT (no registry assets needed) ----------------------------


def _tiny_bert(seed: int = 0):
    from memstream.models.onnx_bert import BertConfig

    cfg = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=40,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
    )
    rng = np.random.default_rng(seed)
    r = lambda *shape: rng.normal(0, 0.2, shape).astype(np.float32)  # noqa: E731
    w = {
        "embeddings.word_embeddings.weight": r(100, 32),
        "embeddings.position_embeddings.weight": r(40, 32),
        "embeddings.token_type_embeddings.weight": r(2, 32),
        "embeddings.LayerNorm.weight": 1 + r(32),
        "embeddings.LayerNorm.bias": r(32),
    }
    for i in range(2):
        p = f"encoder.layer.{i}."
        for name, shape in (
            ("attention.self.query", (32, 32)),
            ("attention.self.key", (32, 32)),
            ("attention.self.value", (32, 32)),
            ("attention.output.dense", (32, 32)),
            ("intermediate.dense", (64, 32)),
            ("output.dense", (32, 64)),
        ):
            w[p + name + ".weight"], w[p + name + ".bias"] = r(*shape), r(shape[0])
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[p + ln + ".weight"], w[p + ln + ".bias"] = 1 + r(32), r(32)
    return cfg, w


def _numpy_bert(cfg, w, ids, mask, types, pooling):
    from math import erf, sqrt

    def ln(x, g, b):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + cfg.layer_norm_eps) * g + b

    w = {k: v.astype(np.float64) for k, v in w.items()}
    B, S = ids.shape
    nh, hd = cfg.num_attention_heads, cfg.head_dim
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:S]
        + w["embeddings.token_type_embeddings.weight"][types]
    )
    x = ln(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    bias = (1.0 - mask[:, None, None, :]) * -1e30
    gelu = np.vectorize(lambda v: 0.5 * v * (1 + erf(v / sqrt(2))))
    for i in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{i}."
        lin = lambda t, n: t @ w[p + n + ".weight"].T + w[p + n + ".bias"]  # noqa: E731
        heads = lambda t: t.reshape(B, S, nh, hd).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = (heads(lin(x, f"attention.self.{n}")) for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + bias
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(0, 2, 1, 3).reshape(B, S, -1)
        x = ln(
            lin(ctx, "attention.output.dense") + x,
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
        )
        x = ln(
            lin(gelu(lin(x, "intermediate.dense")), "output.dense") + x,
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
        )
    if pooling == "mean":
        e = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
    else:
        e = x[:, 0]
    return e / np.linalg.norm(e, axis=1, keepdims=True)


@pytest.mark.parametrize("unpad", [True, False])
@pytest.mark.parametrize("fuse_qkv", [True, False])
@pytest.mark.parametrize("pooling,token_types", [("mean", False), ("cls", True)])
def test_builder_matches_numpy_reference(unpad: bool, fuse_qkv: bool, pooling: str, token_types: bool) -> None:
    import onnxruntime as ort

    from memstream.models.onnx_bert import build_bert_encoder

    cfg, w = _tiny_bert()
    model = build_bert_encoder(cfg, w, pooling=pooling, token_type_ids=token_types, unpad=unpad, fuse_qkv=fuse_qkv)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    lengths = [7, 2, 5]
    ids = np.zeros((3, 7), np.int64)
    mask = np.zeros((3, 7), np.int64)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(1, 100, n)
        mask[row, :n] = 1
    types = (rng.random((3, 7)) < 0.5).astype(np.int64) * mask if token_types else np.zeros_like(ids)
    feeds = {"input_ids": ids, "attention_mask": mask}
    if token_types:
        feeds["token_type_ids"] = types
    got = session.run(None, feeds)[0]
    expected = _numpy_bert(cfg, w, ids, mask.astype(np.float64), types, pooling)
    np.testing.assert_allclose(got, expected, atol=2e-5)


# --- benchmark helpers -------------------------------------------------------------------------------


def test_top_k_agreement() -> None:
    from bench.embed import top_k_agreement

    rng = np.random.default_rng(0)
    v = rng.normal(size=(60, 8)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    assert top_k_agreement(v, v) == 1.0
    assert top_k_agreement(v, rng.normal(size=(60, 8)).astype(np.float32)) < 0.5


def test_wiki_sentences_are_real_and_repeatable() -> None:
    from bench.corpus import wiki_sentences

    a = wiki_sentences(50, seed=3)
    assert a == wiki_sentences(50, seed=3) and len(set(a)) == 50
    assert all(8 <= len(s.split()) <= 40 and s[0].isupper() and s[-1] in ".!?" for s in a)
    assert not any(mark in s for s in a for mark in ("[[", "{{", "|", "<ref"))


def test_models_build_command(fp32: Embedder) -> None:
    from typer.testing import CliRunner

    from memstream.cli.models import app

    result = CliRunner().invoke(app, ["build", "--variant", "fp32"])
    assert result.exit_code == 0, result.output
    assert "all-minilm-l6-v2-fp32.onnx" in result.output
