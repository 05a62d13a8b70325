"""The segmentation evaluation end to end on a tiny JSONL set, with stand-in models (no ONNX)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.eval_segmentation import run
from tests.unit.test_lm_surprise import WordScorer, topics


def test_three_signals_are_evaluated_side_by_side(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEMSTREAM_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "set.jsonl"
    with path.open("w") as fh:
        for s in range(3):
            for i, text in enumerate(topics([15, 15, 15], seed=s)):
                fh.write(json.dumps({"stream": f"s{s}", "text": text, "boundary": i in (15, 30)}) + "\n")

    def embed(texts: list[str]) -> np.ndarray:  # a bag-of-words hash: texts of one topic look alike
        out = np.zeros((len(texts), 32), np.float32)
        for r, t in enumerate(texts):
            for w in t.split():
                out[r, hash(w.split("w")[0]) % 32] += 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    scorer = WordScorer()
    result = run(path, embed=embed, lm=scorer, cost_events=16)
    assert list(result["f1"])[:3] == ["memstream", "memstream_lm", "memstream_blend"]
    assert result["f1"]["memstream_lm"] >= 0.8  # new vocabulary at each gold boundary: the LM finds them
    assert result["pk"]["memstream_lm"] < result["pk"]["none"]
    assert set(result["cost_ms_per_event"]["signals"]) == {"embedding", "lm", "blend"}
    calls = len(scorer.calls)
    again = run(path, embed=embed, lm=scorer, cost_events=0)  # LM surprises come from the cache
    assert len(scorer.calls) == calls and again["f1"] == result["f1"]
    without = run(path, embed=embed, cost_events=0)
    assert "memstream_lm" not in without["f1"]
    with pytest.raises(ValueError):
        run(path, vectors=np.zeros((135, 4)), max_streams=1)
