"""Worker metrics: the registry records what agents report, `GET /metrics` serves it, lag is computed."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import faust
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from faust.types import TP
from prometheus_client.parser import text_string_to_metric_families

from memstream.agents import metrics as metrics_module
from memstream.agents.app import _topics, create_app
from memstream.agents.metrics import CONTENT_TYPE, Metrics, consumer_lag, new_scores
from memstream.agents.runtime import Runtime
from memstream.agents.settings import Settings
from memstream.models.segmentation_config import SegmentationConfig
from memstream.models.segmenter import Segmenter
from memstream.models.session_state import SessionState


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(worker={"state_dir": tmp_path / "state", "table_store": "memory://", "app_id": "metrics-test"})


def test_recording_helpers_show_in_exposition():
    m = Metrics()
    m.received("embed", 3)
    m.sent("embed", 2)
    m.dead_letter("embed")
    m.batch("embed", 3)
    m.embedded(0.03, 3)
    m.scores([1.5, math.nan, 30.0])
    m.episode("opened", 1)
    m.episode("sealed", 7)
    with m.store_timer("upsert_events"):
        pass
    samples = _samples(m.exposition().decode())

    assert samples[("memstream_events_total", (("outcome", "in"), ("stage", "embed")))] == 3
    assert samples[("memstream_events_total", (("outcome", "out"), ("stage", "embed")))] == 2
    assert samples[("memstream_dead_letters_total", (("stage", "embed"),))] == 1
    assert samples[("memstream_batch_size_sum", (("stage", "embed"),))] == 3
    assert samples[("memstream_embed_batch_seconds_count", ())] == 1
    assert samples[("memstream_embed_event_seconds_count", ())] == 3  # one observation per event
    assert samples[("memstream_embed_event_seconds_sum", ())] == pytest.approx(0.03)
    assert samples[("memstream_segment_score_count", ())] == 2  # NaN (undecided) scores are skipped
    assert samples[("memstream_episodes_total", (("kind", "sealed"),))] == 1
    assert samples[("memstream_episode_events_count", ())] == 1  # only sealed episodes have a final length
    assert samples[("memstream_episode_events_sum", ())] == 7
    assert samples[("memstream_store_seconds_count", (("op", "upsert_events"),))] == 1


def test_registries_are_per_instance():
    a, b = Metrics(), Metrics()  # two apps in one process must not clash on metric names
    a.received("embed")
    assert ("memstream_events_total", (("outcome", "in"), ("stage", "embed"))) not in _samples(b.exposition().decode())


def test_set_lag_replaces_series():
    m = Metrics()
    m.set_lag({("t.interactions", 0): 5, ("t.interactions", 1): 0})
    m.set_lag({("t.interactions", 1): 2})  # partition 0 was revoked
    lag = {k[1]: v for k, v in _samples(m.exposition().decode()).items() if k[0] == "memstream_consumer_lag"}
    assert lag == {(("partition", "1"), ("topic", "t.interactions")): 2}


async def test_consumer_lag_is_highwater_minus_committed():
    ours, other = "memstream.interactions", "memstream-segment-sessions-changelog"
    tps = [TP(ours, 0), TP(ours, 1), TP(ours, 2), TP(other, 0)]
    highwater = {tps[0]: 100, tps[1]: 40, tps[2]: None, tps[3]: 9}

    async def position(tp):
        return 30

    consumer = SimpleNamespace(assignment=lambda: set(tps), highwater=highwater.get, position=position)
    app = SimpleNamespace(consumer=consumer, monitor=SimpleNamespace(tp_committed_offsets={tps[0]: 90}))
    lags = await consumer_lag(app, {ours})
    # committed offset where this worker committed; the fetch position before that; unknown highwater skipped
    assert lags == {(ours, 0): 10, (ours, 1): 10}


def test_new_scores_are_the_scores_the_segmenter_decided():
    rng = np.random.default_rng(0)
    segmenter = Segmenter(SegmentationConfig())
    state = SessionState()
    seen: list[float] = []
    for i in range(40):  # fewer than `window` scores: history holds them all
        cursor = state.cursor
        segmenter.push(state, f"e{i}", float(i), rng.normal(size=8) + (5.0 if i >= 20 else 0.0))
        seen.extend(s for s in new_scores(state, cursor) if not math.isnan(s))
    assert seen and seen == state.history


async def _get(app: faust.App, path: str):
    async with TestClient(TestServer(app.web.web_app)) as client:
        response = await client.get(path)
        return response.status, response.headers["Content-Type"], await response.text()


async def test_create_app_serves_metrics(settings):
    app = create_app(settings, stages=("metrics",))
    status, content_type, text = await _get(app, "/metrics")
    assert status == 200
    assert content_type == CONTENT_TYPE
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {
        "memstream_events",
        "memstream_embed_batch_seconds",
        "memstream_consumer_lag",
        "memstream_store_seconds",
        "memstream_episode_events",
    } <= names


async def test_metrics_view_serves_what_agents_record(settings):
    app = faust.App("metrics-view-test", store="memory://", datadir=str(settings.worker.state_dir), autodiscover=False)
    runtime = Runtime(settings)
    metrics_module.register(app, _topics(app, settings), runtime)
    runtime.metrics.received("index", 4)
    runtime.metrics.dead_letter("embed")
    _, _, text = await _get(app, "/metrics")
    samples = _samples(text)
    assert samples[("memstream_events_total", (("outcome", "in"), ("stage", "index")))] == 4
    assert samples[("memstream_dead_letters_total", (("stage", "embed"),))] == 1


def test_grafana_dashboard_queries_only_exported_metrics():
    dashboard = json.loads(
        (Path(__file__).resolve().parents[2] / "deploy/grafana/memstream-dashboard.json").read_text()
    )
    exported = {
        f"{family.name}{suffix}"
        for family in Metrics().registry.collect()
        for suffix in ("", "_total", "_bucket", "_sum", "_count")
    }
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"memstream_[a-z_]+", target["expr"])
    }
    assert queried and queried <= exported, queried - exported
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
