"""Deployment files parse as what they claim to be."""

from __future__ import annotations

from pathlib import Path

import compose_spec

ROOT = Path(__file__).resolve().parents[2]


def test_docker_compose_is_valid_compose_spec():
    compose = compose_spec.PyCompose.from_yaml((ROOT / "docker-compose.yml").read_text())
    compose.validate()
    assert set(compose.service_names()) == {"kafka", "qdrant", "worker"}
    worker = compose.to_dict()["services"]["worker"]
    env = worker["environment"]
    assert env["MEMSTREAM_KAFKA__BOOTSTRAP"] == "kafka:19092"
    assert (ROOT / worker["build"]["dockerfile"]).exists()
