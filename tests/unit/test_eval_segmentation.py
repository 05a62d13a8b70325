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


def test_papers_metrics_and_several_inputs(tmp_path, monkeypatch) -> None:
    from bench.eval_segmentation import run_many
    from bench.segmentation_metrics import stream_metrics

    m = stream_metrics([5, 11], [5, 10], 20, tolerance=3)
    assert m["f1_exact"] == 0.5 and m["f1_tol1"] == 1.0 and m["f1"] == 1.0
    monkeypatch.setenv("MEMSTREAM_CACHE_DIR", str(tmp_path / "cache"))
    short, long = tmp_path / "short.jsonl", tmp_path / "long.jsonl"
    with short.open("w") as fh:  # one short stream, one long: the per-stream mean weighs them alike
        for s, n in (("a", 8), ("b", 40)):
            for i in range(n):
                fh.write(json.dumps({"stream": s, "text": f"t{i // 4}w{i}", "boundary": i > 0 and i % 4 == 0}) + "\n")
    with long.open("w") as fh:  # event records: a new session opens a gold segment, times are read
        for i in range(12):
            event = {"type": "event", "user_id": "u", "session_id": f"s{i // 6}", "ts": 100.0 * i, "text": f"x{i}"}
            fh.write(json.dumps(event) + "\n")

    def embed(texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 16), np.float32)
        for r, t in enumerate(texts):
            out[r, hash(t.split("w")[0]) % 16] = 1.0
        return out

    result = run_many([short, long, "demo"], embed=embed, cost_events=0)["datasets"]
    assert list(result) == ["short", "long", "demo"]
    for res in result.values():
        for key in ("pk_mean", "windowdiff_mean", "f1_exact", "f1_tol1"):
            assert set(res[key]) == set(res["pk"])
    assert result["short"]["pk_mean"]["none"] != result["short"]["pk"]["none"]
    assert result["long"]["data"]["gold_boundaries"] == 1 and result["long"]["data"]["timestamps"]
    assert result["demo"]["data"]["gold_boundaries"] == 2 and result["demo"]["data"]["records"] == 24
