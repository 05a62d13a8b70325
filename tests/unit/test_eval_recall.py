"""The recall evaluation end to end on a tiny LoCoMo-format set, with a stand-in embedder (no ONNX): the
events go through the real segmenter and an embedded store, the baselines are computed beside them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.eval_recall import recall_at, run
from memstream.agents.settings import Settings
from memstream.agents.store import StoreConfig

DIM = 64
TOPICS = {
    "boats": ["the harbour", "a sailing boat", "the mast and the sails", "the tide came in", "we anchored offshore"],
    "bread": ["the sourdough starter", "kneading the dough", "the oven was hot", "a crusty loaf", "flour everywhere"],
    "music": ["the piano lesson", "scales and chords", "a jazz standard", "the metronome ticked", "my teacher smiled"],
}


def embed(texts: list[str]) -> np.ndarray:
    """Bag of hashed words: texts sharing words look alike; deterministic across processes."""
    import zlib

    out = np.zeros((len(texts), DIM), np.float32)
    for row, text in enumerate(texts):
        for word in text.lower().replace("?", " ").split():
            out[row, zlib.crc32(word.encode()) % DIM] += 1.0
        out[row, -1] += 0.01
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def write_set(path: Path) -> list[dict]:
    records, questions = [], []
    for user in ("alice", "bob"):
        for s, topic in enumerate(TOPICS):
            session = f"{user}-s{s}"
            for i, phrase in enumerate(TOPICS[topic]):
                event_id = f"{session}-{i}"
                text = f"{user.title()}: yesterday {phrase} was nice"
                if i == 2:
                    text += f" and I met Quillon{s}{user} there"
                records.append(
                    {
                        "type": "event",
                        "event_id": event_id,
                        "tenant_id": "t",
                        "user_id": user,
                        "session_id": session,
                        "ts": 1_700_000_000.0 + s * 86_400 + i * 30,
                        "role": "user",
                        "text": text,
                    }
                )
                if i == 2:
                    questions.append(
                        {
                            "type": "question",
                            "tenant_id": "t",
                            "user_id": user,
                            "question": f"Where did {user.title()} meet Quillon{s}{user}?",
                            "evidence": [event_id],
                            "category": 4,
                        }
                    )
            records.append(
                {
                    "type": "event",
                    "event_id": f"{session}-end",
                    "tenant_id": "t",
                    "user_id": user,
                    "session_id": session,
                    "ts": 1_700_000_000.0 + s * 86_400 + 600,
                    "kind": "session_end",
                    "text": "",
                }
            )
    path.write_text("\n".join(json.dumps(r) for r in records + questions) + "\n")
    return questions


def test_recall_is_measured_for_memstream_and_the_baselines(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEMSTREAM_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "set.jsonl"
    questions = write_set(path)
    settings = Settings(store=StoreConfig(dim=DIM))
    result = run(path, budgets=[1, 3, 5], embed=embed, settings=settings, progress=False)

    assert set(result["recall"]) == {"memstream", "episodes_two_stage", "dense", "bm25", "rrf"}
    assert all(list(values) == ["1", "3", "5"] for values in result["recall"].values())
    assert result["data"] == {
        "input": str(path),
        "events": 30,
        "questions": len(questions),
        "scopes": 2,
        "stored": {"events": 30, "episodes": result["data"]["stored"]["episodes"]},
    }
    assert result["data"]["stored"]["episodes"] >= 6  # every session sealed at its session_end
    # the rare name is in exactly one turn: hybrid search puts it first
    assert result["recall"]["memstream"]["1"] == 1.0
    # at a budget of B, no method returns more than B events
    for method, returned in result["returned"].items():
        assert all(returned[b] <= int(b) for b in returned), method
    assert result["returned"]["memstream"] == {"1": 1.0, "3": 3.0, "5": 5.0}
    assert set(result["by_category"]["memstream"]) == {"4"}
    assert result["latency_ms"]["p95"] >= result["latency_ms"]["p50"] > 0


def test_recall_at_counts_evidence_among_the_first_b() -> None:
    assert recall_at(["a", "b", "c"], {"b", "z"}, 1) == 0.0
    assert recall_at(["a", "b", "c"], {"b", "z"}, 2) == 0.5
    assert recall_at(["a", "b"], {"a", "b"}, 50) == 1.0


def test_bad_input_is_refused_with_the_line(tmp_path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"type": "turn", "text": "hi"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: 'type'"):
        run(path, embed=embed, settings=Settings(store=StoreConfig(dim=DIM)))
    path.write_text(json.dumps({"type": "question", "question": "q", "evidence": []}) + "\n")
    with pytest.raises(ValueError, match="evidence"):
        run(path, embed=embed, settings=Settings(store=StoreConfig(dim=DIM)))
