"""The refreshable error memory: the policy's decisions (capacity, ttl, model_version reset), both backends,
checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from memstream.models.compensation import CompensationConfig
from memstream.models.error_memory import ErrorBackend, ErrorMemory, Eviction, apply_decision
from memstream.models.error_policy import (
    ClearTenant,
    ErrorPolicy,
    ErrorSample,
    EvictOldest,
    ExpireBefore,
    ResetVersion,
    StoreSample,
    WriteDecision,
)
from memstream.models.knn_backend import KnnBackend
from memstream.models.sketch_backend import SketchBackend

BACKENDS = [KnnBackend, SketchBackend]


def _key(seed: int, dim: int = 16) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def _sample(
    i: int,
    ts: float | None = None,
    version: str = "v1",
    key: np.ndarray | None = None,
    label: float = 1.0,
    prediction: float = 0.3,
) -> ErrorSample:
    return ErrorSample(
        f"s{i}", _key(i) if key is None else key, label, prediction, float(i if ts is None else ts), version
    )


# -- the policy's decisions ----------------------------------------------------------------------------
def test_policy_first_sample_is_stored_then_capacity_and_ttl_are_decided() -> None:
    policy = ErrorPolicy(CompensationConfig(capacity=3, ttl_s=10.0))
    s = _sample(0, ts=100.0)
    assert policy.write("t", s) == WriteDecision(
        stored=True,
        decisions=(StoreSample("t", s), EvictOldest("t", 3, "v1"), ExpireBefore("t", 90.0, "v1")),
    )
    assert policy.model_version("t") == "v1" and policy.model_version("u") is None
    assert policy.version_state() == {"t": {"current": "v1", "retired": [], "watermark": 100.0}}


def test_policy_capacity_is_decided_on_every_write_and_a_backend_drops_the_oldest() -> None:
    cfg = CompensationConfig(capacity=2, ttl_s=None)
    policy, backend = ErrorPolicy(cfg), KnnBackend(cfg)
    evictions: list[Eviction] = []
    for i in range(3):
        s = _sample(i)
        decided = policy.write("t", s)
        assert decided.decisions == (StoreSample("t", s), EvictOldest("t", 2, "v1"))  # no ttl: no ExpireBefore
        evictions += [e for d in decided.decisions if (e := apply_decision(backend, d)) is not None]
    assert evictions == [Eviction("t", "capacity", "v1", 1, ("s0",))]
    assert backend.size("t") == 2


def test_policy_ttl_follows_the_event_time_watermark() -> None:
    policy = ErrorPolicy(CompensationConfig(capacity=100, ttl_s=10.0))
    assert policy.write("t", _sample(0, ts=0.0)).decisions[-1] == ExpireBefore("t", -10.0, "v1")
    assert policy.write("t", _sample(1, ts=20.0)).decisions[-1] == ExpireBefore("t", 10.0, "v1")
    late = policy.write("t", _sample(2, ts=12.0))  # out of order but within ttl: the cutoff stays at 10
    assert late.stored and late.decisions[-1] == ExpireBefore("t", 10.0, "v1")
    assert policy.write("t", _sample(3, ts=3.0)) == WriteDecision(stored=False, refused="expired")
    assert policy.expire("t", now=25.0) == (EvictOldest("t", 100, "v1"), ExpireBefore("t", 15.0, "v1"))
    assert policy.expire("t", now=5.0)[-1] == ExpireBefore("t", 15.0, "v1")  # the watermark never goes back
    assert policy.expire("unknown", now=50.0) == ()


def test_policy_new_model_version_resets_first_and_retires_the_old_one() -> None:
    policy = ErrorPolicy(CompensationConfig(capacity=5, ttl_s=None))
    policy.write("t", _sample(0, version="v1"))
    policy.write("u", _sample(0, version="v1"))
    s = _sample(1, ts=7.0, version="v2")
    decided = policy.write("t", s)
    assert decided.stored and decided.decisions == (
        ResetVersion("t", retired="v1", model_version="v2", ts=7.0),
        StoreSample("t", s),
        EvictOldest("t", 5, "v2"),
    )
    assert policy.model_version("t") == "v2" and policy.model_version("u") == "v1"
    assert policy.write("t", _sample(2, version="v1")) == WriteDecision(stored=False, refused="retired_model_version")
    assert policy.version_state()["t"] == {"current": "v2", "retired": ["v1"], "watermark": 7.0}
    assert policy.reset("t") == ClearTenant("t", "v2") and policy.model_version("t") == "v2"
    restored = ErrorPolicy(CompensationConfig(capacity=5, ttl_s=None))  # a restart: same state, same decisions
    restored.restore_version_state(policy.version_state())
    assert restored.write("t", _sample(3, version="v1")).refused == "retired_model_version"
    s = _sample(4, version="v2")
    assert restored.write("t", s).decisions[0] == StoreSample("t", s)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_follow_the_protocol(backend) -> None:
    assert isinstance(backend(CompensationConfig()), ErrorBackend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_api_all_positive_feedback_raises_prediction(backend) -> None:
    cfg = CompensationConfig(ttl_s=None)
    mem = ErrorMemory(backend(cfg), cfg)
    centre = _key(0)
    assert mem.compensate("t", centre, 0.4).y == 0.4  # empty memory: base prediction
    rng = np.random.default_rng(1)
    for i in range(50):
        k = centre + 0.05 * rng.standard_normal(centre.size)
        mem.write("t", _sample(i, key=(k / np.linalg.norm(k)).astype(np.float32), label=1.0, prediction=0.4))
    out = mem.compensate("t", centre, 0.4)
    assert out.y > 0.4 and out.compensated
    assert mem.compensate("other-tenant", centre, 0.4).y == 0.4  # tenants do not share memory


def test_knn_names_its_neighbours_and_respects_min_similarity() -> None:
    cfg = CompensationConfig(k=2, ttl_s=None, min_similarity=0.5)
    mem = ErrorMemory(KnnBackend(cfg), cfg)
    q = _key(100)
    near = q + 0.01 * _key(101)
    mem.write("t", _sample(1, key=(near / np.linalg.norm(near)).astype(np.float32)))
    mem.write("t", _sample(2, key=q))
    mem.write("t", _sample(3, key=-q))  # similarity −1: below the threshold
    out = mem.compensate("t", q, 0.5)
    assert out.neighbour_ids == ("s2", "s1") and out.support == 2
    ortho = _key(999) - float(_key(999) @ q) * q  # cosine 0 with s2 and ≈ 0 with s1, s3
    out = mem.compensate("t", (ortho / np.linalg.norm(ortho)).astype(np.float32), 0.5)
    assert out.neighbour_ids == () and out.y == 0.5  # nothing similar enough: base prediction


def test_knn_capacity_evicts_oldest_and_reports_ids() -> None:
    cfg = CompensationConfig(capacity=3, ttl_s=None)
    mem = ErrorMemory(KnnBackend(cfg), cfg)
    for i in range(3):
        assert mem.write("t", _sample(i)).evictions == ()
    res = mem.write("t", _sample(3))
    assert res.stored
    (ev,) = res.evictions
    assert (ev.reason, ev.count, ev.sample_ids, ev.tenant_id, ev.model_version) == ("capacity", 1, ("s0",), "t", "v1")
    (ev,) = mem.write("t", _sample(4)).evictions
    assert ev.sample_ids == ("s1",)
    assert mem.backend.size("t") == 3
    # the evicted sample no longer answers: querying its own key finds others only
    assert "s0" not in mem.compensate("t", _key(0), 0.5).neighbour_ids


def test_knn_replayed_sample_overwrites() -> None:
    cfg = CompensationConfig(ttl_s=None)
    mem = ErrorMemory(KnnBackend(cfg), cfg)
    mem.write("t", _sample(1, label=0.0))
    mem.write("t", _sample(1, label=1.0))  # same sample_id (at-least-once replay)
    assert mem.backend.size("t") == 1
    est = mem.estimate("t", _key(1))
    assert est is not None and est.label_mean == 1.0


def test_knn_ttl_in_event_time_and_sweep() -> None:
    cfg = CompensationConfig(ttl_s=10.0, capacity=100)
    mem = ErrorMemory(KnnBackend(cfg), cfg)
    assert mem.write("t", _sample(0, ts=0.0)).evictions == ()
    assert mem.write("t", _sample(1, ts=5.0)).evictions == ()
    (ev,) = mem.write("t", _sample(2, ts=20.0)).evictions  # watermark 20 → cutoff 10
    assert (ev.reason, ev.sample_ids, ev.count) == ("ttl", ("s0", "s1"), 2)
    late = mem.write("t", _sample(3, ts=3.0))  # older than the cutoff on arrival
    assert not late.stored and late.refused == "expired"
    assert mem.write("t", _sample(4, ts=12.0)).stored  # late but within ttl of the watermark
    assert mem.backend.size("t") == 2
    (ev,) = mem.expire("t", now=25.0)  # periodic sweep: cutoff 15
    assert (ev.reason, ev.sample_ids) == ("ttl", ("s4",))
    (ev,) = mem.expire("t", now=31.0)
    assert ev.sample_ids == ("s2",)
    assert mem.backend.size("t") == 0 and mem.expire("t", now=50.0) == ()
    assert mem.expire("unknown", now=50.0) == ()


def test_knn_ttl_drops_from_the_middle() -> None:
    cfg = CompensationConfig(ttl_s=10.0, capacity=100, min_similarity=-1.0)  # every live sample answers
    mem = ErrorMemory(KnnBackend(cfg), cfg)
    for i, ts in enumerate([15.0, 12.0, 16.0, 11.0, 17.0]):  # out of order, all within ttl on arrival
        assert mem.write("t", _sample(i, ts=ts)).stored
    assert mem.backend.size("t") == 5
    (ev,) = mem.expire("t", now=25.5)  # cutoff 15.5: s0, s1, s3 go; s2 (between them) stays
    assert ev.sample_ids == ("s0", "s1", "s3")
    assert set(mem.compensate("t", _key(2), 0.5).neighbour_ids) == {"s2", "s4"}
    mem.write("t", _sample(5, ts=18.0))  # the memory keeps working after compaction
    assert set(mem.compensate("t", _key(5), 0.5).neighbour_ids) == {"s2", "s4", "s5"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_new_model_version_resets_and_old_version_is_retired(backend) -> None:
    cfg = CompensationConfig(ttl_s=None)
    mem = ErrorMemory(backend(cfg), cfg)
    for i in range(5):
        mem.write("t", _sample(i, version="v1"))
    mem.write("u", _sample(0, version="v1"))
    res = mem.write("t", _sample(10, version="v2"))
    (ev,) = res.evictions
    assert res.stored and (ev.reason, ev.count, ev.model_version) == ("model_version", 5, "v1")
    if backend is KnnBackend:
        assert set(ev.sample_ids) == {f"s{i}" for i in range(5)}
    assert mem.model_version("t") == "v2" and mem.backend.size("t") == 1
    assert mem.model_version("u") == "v1" and mem.backend.size("u") == 1  # other tenants untouched
    late = mem.write("t", _sample(11, version="v1"))  # late feedback of the retired model
    assert not late.stored and late.refused == "retired_model_version" and mem.backend.size("t") == 1
    # a query made with the old model's predictions is not compensated from the new model's errors
    assert mem.compensate("t", _key(10), 0.5, model_version="v1").y == 0.5
    assert mem.compensate("t", _key(10), 0.5, model_version="v2").compensated


@pytest.mark.parametrize("backend", BACKENDS)
def test_reset(backend) -> None:
    cfg = CompensationConfig(ttl_s=None)
    mem = ErrorMemory(backend(cfg), cfg)
    assert mem.reset("t") is None
    for i in range(4):
        mem.write("t", _sample(i))
    ev = mem.reset("t")
    assert ev is not None and (ev.reason, ev.count) == ("reset", 4)
    assert mem.backend.size("t") == 0 and mem.model_version("t") == "v1"


def test_sketch_capacity_drops_whole_generations() -> None:
    cfg = CompensationConfig(capacity=10, ttl_s=None, sketch_generations=2)
    mem = ErrorMemory(SketchBackend(cfg), cfg)
    sizes, evicted = [], 0
    for i in range(40):
        res = mem.write("t", _sample(i))
        evicted += sum(e.count for e in res.evictions if e.reason == "capacity")
        sizes.append(mem.backend.size("t"))
    assert max(sizes) <= 10  # never more than capacity
    assert min(sizes[10:]) >= 6  # and at least (G−1)/G·capacity once full (+1 for the fresh generation)
    assert evicted + sizes[-1] == 40


def test_sketch_ttl_never_reads_expired_samples() -> None:
    cfg = CompensationConfig(capacity=1000, ttl_s=10.0, sketch_generations=2)
    mem = ErrorMemory(SketchBackend(cfg), cfg)
    key = _key(0)
    for ts in range(0, 5):
        mem.write("t", _sample(ts, ts=float(ts), key=key, label=0.0))  # generation 1: ts 0..4
    evicted = []
    for ts in range(5, 14):
        evicted += mem.write("t", _sample(ts, ts=float(ts), key=key, label=1.0)).evictions
    # the first generation spans ttl/G = 5 s (ts 0..4); by ts 13 the cutoff is 3, so it went as a whole
    assert [(e.reason, e.count) for e in evicted] == [("ttl", 5)]
    est = mem.estimate("t", key)
    assert est is not None and est.label_mean == 1.0
    assert mem.backend.size("t") <= 9
    assert mem.expire("t", now=100.0)[0].reason == "ttl"
    assert mem.backend.size("t") == 0 and mem.estimate("t", key) is None


def test_sketch_backend_checkpoint_round_trip() -> None:
    cfg = CompensationConfig(ttl_s=None, capacity=50, sketch_arrays=8, sketch_bits=6)
    backend = SketchBackend(cfg)
    mem = ErrorMemory(backend, cfg)
    rng = np.random.default_rng(0)
    for i in range(60):
        mem.write("a" if i % 2 else "b", _sample(i, label=float(rng.random() < 0.7)))
    restored = SketchBackend.from_bytes(backend.to_bytes())
    for tenant in ("a", "b"):
        assert restored.size(tenant) == backend.size(tenant)
        for j in range(5):
            assert restored.estimate(tenant, _key(j)) == backend.estimate(tenant, _key(j))
    mem2 = ErrorMemory(restored, cfg)
    mem2.restore_version_state(mem.version_state())
    assert mem2.model_version("a") == "v1"
    assert mem2.write("a", _sample(99)).stored
    with pytest.raises(ValueError):
        SketchBackend.from_bytes(backend.to_bytes(), CompensationConfig(sketch_bits=7))
    assert SketchBackend.from_bytes(SketchBackend(cfg).to_bytes()).size("a") == 0  # empty checkpoint


def test_key_dimension_mismatch_is_an_error() -> None:
    cfg = CompensationConfig(ttl_s=None)
    for backend in (KnnBackend(cfg), SketchBackend(cfg)):
        mem = ErrorMemory(backend, cfg)
        mem.write("t", _sample(0))
        with pytest.raises(ValueError):
            mem.write("t", _sample(1, key=_key(1, dim=8)))
        with pytest.raises(ValueError):
            mem.compensate("t", _key(1, dim=8), 0.5)
