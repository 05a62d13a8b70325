"""Behaviour of the pure pieces of hybrid recall: the lexical encoder (`models.lexical`), the episode
context mix (`models.event_context`) and the budgeted selection (`models.recall.within_budget`)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memstream.models.event_context import context_vectors, context_weights
from memstream.models.lexical import LexicalConfig, LexicalEncoder, SparseVector, add_sparse
from memstream.models.recall import within_budget


@pytest.fixture(scope="module")
def enc() -> LexicalEncoder:
    return LexicalEncoder()


def sparse_dot(a: SparseVector, b: SparseVector) -> float:
    bd = b.as_dict()
    return sum(v * bd.get(i, 0.0) for i, v in zip(a.indices, a.values))


# -- LexicalEncoder --------------------------------------------------------------------------------------


def test_inflections_share_one_term(enc: LexicalEncoder):
    ids = {enc.query(word).indices for word in ("researching", "researched", "research", "Researches")}
    assert len(ids) == 1 and len(next(iter(ids))) == 1
    # and a different word does not collide with it
    assert enc.query("search").indices != enc.query("research").indices
    # a document with all three forms holds one term, weighted as tf = 3
    doc = enc.document("researching researched research")
    assert len(doc) == 1
    assert doc.values[0] == pytest.approx(3 * 2.2 / (3 + 1.2))


def test_punctuation_is_dropped(enc: LexicalEncoder):
    assert enc.terms("Hello, world!!! ... (yes) -- ?") == ["hello", "world", "yes"]
    assert enc.query("hello world") == enc.query("hello... world?!")
    assert enc.document("!!! ... ??? ---") == SparseVector()


def test_case_and_accents_fold(enc: LexicalEncoder):
    assert enc.query("Café") == enc.query("cafe") == enc.query("CAFÉ")
    assert enc.terms("Naïve Zoë") == enc.terms("naive zoe")
    assert enc.query("cafe") != enc.query("cafes and coffee")


def test_term_ids_are_deterministic_across_instances_and_processes(enc: LexicalEncoder):
    text = "Zorblax met Quillon at the harbour in Reykjavík"
    other = LexicalEncoder(LexicalConfig())
    assert other.document(text) == enc.document(text)
    assert other.query(text) == enc.query(text)
    assert all(0 <= i < 2**32 for i in enc.document(text).indices)
    # ids are persisted in the store: a process with another hash seed must compute the same ones
    script = f"from memstream.models.lexical import LexicalEncoder; print(*LexicalEncoder().document({text!r}).indices)"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True, cwd=os.getcwd(), timeout=60
    )
    assert [int(i) for i in out.stdout.split()] == list(enc.document(text).indices)


def test_document_weight_saturates_with_tf(enc: LexicalEncoder):
    k1 = enc.config.k1
    weights = []
    for tf in range(1, 40):
        (w,) = enc.document(" ".join(["apple"] * tf)).values
        weights.append(w)
    assert weights[0] == pytest.approx(1.0)
    assert all(b > a for a, b in zip(weights, weights[1:]))  # grows
    assert all(w < k1 + 1 for w in weights)  # but never reaches k1 + 1
    assert weights[-1] > k1 + 1 - 0.1
    gains = np.diff(weights)
    assert all(g2 < g1 for g1, g2 in zip(gains, gains[1:]))  # each repeat adds less
    # the other words of a document do not change a term's weight (b = 0: no length normalisation)
    short = enc.document("apple").as_dict()
    long = enc.document("apple " + " ".join(f"word{i}" for i in range(50))).as_dict()
    assert long[enc.query("apple").indices[0]] == pytest.approx(short[enc.query("apple").indices[0]])


def test_other_k1_changes_saturation():
    enc = LexicalEncoder(LexicalConfig(k1=0.5))
    (w1,) = enc.document("pear").values
    (w9,) = enc.document(" ".join(["pear"] * 9)).values
    assert w1 == pytest.approx(1.0)
    assert w9 == pytest.approx(9 * 1.5 / 9.5)


def test_query_counts_repeats(enc: LexicalEncoder):
    q = enc.query("zorblax zorblax Zorblax harbour")
    d = q.as_dict()
    assert sorted(d.values()) == [1.0, 3.0]
    assert d[enc.query("zorblax").indices[0]] == 3.0
    assert d[enc.query("harbour").indices[0]] == 1.0


def test_vectors_are_sorted_unique(enc: LexicalEncoder):
    v = enc.document("the quick brown fox jumps over the lazy dog; the dog sleeps")
    assert list(v.indices) == sorted(set(v.indices))
    assert len(v.indices) == len(v.values)


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "?!.,;"])
def test_empty_text_gives_empty_vector(enc: LexicalEncoder, text: str):
    assert len(enc.document(text)) == 0
    assert len(enc.query(text)) == 0
    assert enc.terms(text) == []


def test_max_terms_keeps_the_most_frequent():
    enc = LexicalEncoder(LexicalConfig(max_terms=2))
    v = enc.query("kiwi kiwi kiwi mango mango lime")
    assert len(v) == 2
    assert sorted(v.values) == [2.0, 3.0]


def test_bad_stemmer_language_is_a_value_error():
    with pytest.raises(ValueError, match="klingon"):
        LexicalEncoder(LexicalConfig(language="klingon"))


def test_other_stemmer_language():
    french = LexicalEncoder(LexicalConfig(language="french"))
    assert french.query("manger") == french.query("Mangé")
    german = LexicalEncoder(LexicalConfig(language="german"))
    assert german.query("Häuser") == german.query("Hauses")
    assert LexicalEncoder().query("Häuser") != LexicalEncoder().query("Hauses")  # English stems differ


def test_sparse_vector_helpers():
    with pytest.raises(ValueError):
        SparseVector((1, 2), (1.0,))
    v = SparseVector.from_dict({5: 2.0, 1: 1.0, 3: 0.0})
    assert v.indices == (1, 5) and v.values == (1.0, 2.0)  # sorted, zeros dropped
    assert v.scaled(0.5).values == (0.5, 1.0)
    total = add_sparse([v, SparseVector((5, 7), (1.0, 4.0))], [2.0, 0.5])
    assert total.as_dict() == {1: 2.0, 5: 4.5, 7: 2.0}


# -- context_vectors -------------------------------------------------------------------------------------


def _random_sparse(rng: np.random.Generator, vocab: int = 12) -> SparseVector:
    k = int(rng.integers(0, 5))
    idx = rng.choice(vocab, size=k, replace=False)
    return SparseVector.from_dict({int(i): float(rng.uniform(0.5, 2.0)) for i in idx})


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 8), beta=st.floats(0.0, 4.0), seed=st.integers(0, 2**16))
def test_mixed_scores_are_the_mix_of_own_scores(n: int, beta: float, seed: int):
    """Scores are linear in document vectors: q·mixed_i == Σ_j W[i, j] · (q·own_j), dense and sparse."""
    rng = np.random.default_rng(seed)
    dense = rng.standard_normal((n, 6)).astype(np.float32)
    sparse = [_random_sparse(rng) for _ in range(n)]
    q_dense = rng.standard_normal(6)
    q_sparse = _random_sparse(rng)
    mixed_dense, mixed_sparse = context_vectors(dense, sparse, beta)
    w = context_weights(n, beta)
    own_dense = dense.astype(np.float64) @ q_dense
    own_sparse = np.array([sparse_dot(q_sparse, s) for s in sparse])
    np.testing.assert_allclose(mixed_dense.astype(np.float64) @ q_dense, w @ own_dense, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose([sparse_dot(q_sparse, s) for s in mixed_sparse], w @ own_sparse, rtol=1e-9, atol=1e-9)
    # and W is own + beta · mean(previous, next)
    for i in range(n):
        expected_own = np.zeros(n)
        expected_own[i] = 1.0
        for j in (i - 1, i + 1):
            if 0 <= j < n:
                expected_own[j] += beta / 2
        np.testing.assert_allclose(w[i], expected_own)


def test_context_weights_by_hand():
    np.testing.assert_allclose(
        context_weights(4, 0.5),
        [[1, 0.25, 0, 0], [0.25, 1, 0.25, 0], [0, 0.25, 1, 0.25], [0, 0, 0.25, 1]],
    )
    assert context_weights(1, 3.0).tolist() == [[1.0]]
    assert context_weights(0, 1.0).shape == (0, 0)
    with pytest.raises(ValueError):
        context_weights(-1, 0.5)


def test_first_and_last_have_one_neighbour():
    dense = np.eye(4, dtype=np.float32)
    sparse = [SparseVector((i,), (1.0,)) for i in range(4)]
    mixed_dense, mixed_sparse = context_vectors(dense, sparse, beta=1.0)
    np.testing.assert_allclose(mixed_dense[0], [1.0, 0.5, 0, 0])
    np.testing.assert_allclose(mixed_dense[1], [0.5, 1.0, 0.5, 0])
    np.testing.assert_allclose(mixed_dense[3], [0, 0, 0.5, 1.0])
    assert mixed_sparse[0].as_dict() == {0: 1.0, 1: 0.5}
    assert mixed_sparse[2].as_dict() == {1: 0.5, 2: 1.0, 3: 0.5}
    assert mixed_sparse[3].as_dict() == {2: 0.5, 3: 1.0}


def test_beta_zero_gives_own_vectors():
    rng = np.random.default_rng(3)
    dense = rng.standard_normal((5, 7)).astype(np.float32)
    sparse = [_random_sparse(rng) for _ in range(5)]
    mixed_dense, mixed_sparse = context_vectors(dense, sparse, 0.0)
    np.testing.assert_array_equal(mixed_dense, dense)
    assert mixed_sparse == sparse


def test_single_event_episode_keeps_own_vectors():
    dense = np.array([[0.6, 0.8]], dtype=np.float32)
    sparse = [SparseVector((3, 9), (1.0, 1.5))]
    mixed_dense, mixed_sparse = context_vectors(dense, sparse, 2.0)
    np.testing.assert_allclose(mixed_dense, dense)
    assert mixed_sparse == sparse


def test_length_mismatch_is_a_value_error():
    with pytest.raises(ValueError):
        context_vectors(np.ones((3, 4)), [SparseVector()] * 2, 0.5)
    with pytest.raises(ValueError):
        context_vectors(np.ones((2, 4)), [SparseVector()] * 3, 0.5)


# -- within_budget ---------------------------------------------------------------------------------------


_hits_and_mates = st.integers(0, 20).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, n), max_size=12),  # hits, may repeat (a store never does; be safe)
        st.dictionaries(st.integers(0, n), st.lists(st.integers(0, n), max_size=6), max_size=n + 1),
    )
)


@settings(max_examples=200, deadline=None)
@given(hm=_hits_and_mates, turns=st.integers(0, 4), budget=st.integers(0, 15))
def test_within_budget_properties(hm, turns: int, budget: int):
    hits, mates = hm
    out = within_budget(hits, mates, turns, budget)
    items = [item for item, _ in out]
    assert len(out) <= budget
    assert len(items) == len(set(items))  # no duplicates
    # hits appear in the order given (first occurrences), each a hit (None) unless it came as a mate first
    hit_rows = [item for item, of in out if of is None]
    assert hit_rows == [h for h in dict.fromkeys(hits) if h in hit_rows]
    assert all(item in hits for item in hit_rows)
    # after each hit come only its own mates, at most `turns` of them, in the order given
    current, run = None, []
    runs: dict[int, list[int]] = {}
    for item, of in out:
        if of is None:
            current, run = item, []
            runs[item] = run
        else:
            assert of == current
            assert item in mates.get(of, [])
            run.append(item)
    for hit, got in runs.items():
        assert len(got) <= turns
        wanted = [m for m in mates.get(hit, []) if m in got]
        assert got == list(dict.fromkeys(wanted))
    # budget is filled whenever there is enough to fill it
    distinct_hits = list(dict.fromkeys(hits))
    if turns == 0:
        assert items == distinct_hits[:budget]
    elif len(distinct_hits) >= budget:
        assert len(out) == budget


def test_within_budget_by_hand():
    mates = {"a": ["a1", "a2", "a3"], "b": ["a1", "b1"], "c": []}
    assert within_budget(["a", "b", "c"], mates, 2, 10) == [
        ("a", None),
        ("a1", "a"),
        ("a2", "a"),
        ("b", None),
        ("b1", "b"),
        ("c", None),
    ]
    assert within_budget(["a", "b", "c"], mates, 2, 4) == [("a", None), ("a1", "a"), ("a2", "a"), ("b", None)]
    assert within_budget(["a", "b", "c"], mates, 0, 2) == [("a", None), ("b", None)]
    # a hit already returned as a mate is not repeated
    assert within_budget(["a", "a1", "b"], mates, 1, 10) == [("a", None), ("a1", "a"), ("b", None), ("b1", "b")]
    assert within_budget([], mates, 3, 5) == []
    with pytest.raises(ValueError):
        within_budget(["a"], mates, -1, 5)
    with pytest.raises(ValueError):
        within_budget(["a"], mates, 1, -1)
