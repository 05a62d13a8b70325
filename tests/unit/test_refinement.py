"""Modularity / conductance refinement on hand-built similarity matrices."""

from __future__ import annotations

import numpy as np
import pytest

from memstream.models.refinement import best_split, refine_boundaries, similarity_graph, split_scores


def blocks(sizes: list[int], inside: float = 1.0, across: float = 0.1, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    n = sum(sizes)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    adj = np.where(labels[:, None] == labels[None, :], inside, across).astype(float)
    if noise:
        e = np.random.default_rng(seed).uniform(0, noise, size=(n, n))
        adj += (e + e.T) / 2
    np.fill_diagonal(adj, 0.0)
    return adj


def modularity_brute(adj: np.ndarray, p: int) -> float:
    n = adj.shape[0]
    two_m = adj.sum()
    k = adj.sum(1)
    c = np.arange(n) >= p
    same = c[:, None] == c[None, :]
    return float(((adj - np.outer(k, k) / two_m) * same).sum() / two_m)


def conductance_brute(adj: np.ndarray, p: int) -> float:
    cut = adj[:p, p:].sum()
    return float(cut / min(adj[:p].sum(), adj[p:].sum()))


def test_split_scores_match_definitions() -> None:
    adj = blocks([4, 6], noise=0.3)
    cands = np.arange(1, 10)
    np.testing.assert_allclose(split_scores(adj, cands, "modularity"), [modularity_brute(adj, p) for p in cands])
    np.testing.assert_allclose(split_scores(adj, cands, "conductance"), [-conductance_brute(adj, p) for p in cands])


@pytest.mark.parametrize("objective", ["modularity", "conductance"])
def test_best_split_finds_the_block_edge(objective: str) -> None:
    adj = blocks([7, 9], noise=0.4, seed=3)
    assert best_split(adj, range(2, 14), objective) == 7


def test_ties_go_to_the_preferred_point() -> None:
    adj = np.zeros((6, 6))
    assert best_split(adj, [1, 2, 3, 4, 5], prefer=4) == 4
    assert best_split(adj, [1, 2, 3, 4, 5]) == 1


def test_refine_moves_boundaries_and_keeps_their_number() -> None:
    adj = blocks([10, 8, 12], noise=0.3, seed=1)
    assert refine_boundaries(adj, [7, 21], radius=3) == [10, 18]
    assert refine_boundaries(adj, [7, 21], radius=3, objective="conductance") == [10, 18]
    # a boundary out of reach moves as far as the radius allows
    assert refine_boundaries(adj, [4, 18], radius=2) == [6, 18]
    # min_len keeps segments long enough
    assert refine_boundaries(adj, [12], radius=4, min_len=13)[0] >= 13


def test_similarity_graph() -> None:
    x = np.array([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0]])
    adj = similarity_graph(x)
    np.testing.assert_allclose(adj, [[0, 0.6, 0], [0.6, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(similarity_graph(x, floor=0.5), [[0, 0.1, 0], [0.1, 0, 0], [0, 0, 0]])


def test_empty_graph_and_bad_candidates() -> None:
    assert np.all(split_scores(np.zeros((3, 3)), [1, 2]) == 0)
    with pytest.raises(ValueError):
        split_scores(np.zeros((3, 3)), [0])
    with pytest.raises(ValueError):
        best_split(np.zeros((3, 3)), [])
