"""Deployment files parse as what they claim to be."""

from __future__ import annotations

import re
from pathlib import Path

import compose_spec
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_docker_compose_is_valid_compose_spec():
    compose = compose_spec.PyCompose.from_yaml((ROOT / "docker-compose.yml").read_text())
    compose.validate()
    assert set(compose.service_names()) == {"kafka", "qdrant", "worker"}
    worker = compose.to_dict()["services"]["worker"]
    env = worker["environment"]
    assert env["MEMSTREAM_KAFKA__BOOTSTRAP"] == "kafka:19092"
    assert (ROOT / worker["build"]["dockerfile"]).exists()


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


SECRET_WORDS = ("KEY", "PASSWORD", "SECRET", "TOKEN")
REQUIRED = re.compile(r"^\$\{(?P<var>[A-Z][A-Z0-9_]*):\?(?P<message>[^}]+)\}$")
"""Compose's "required variable" form: ``${VAR:?message}`` stops `docker compose` with the message when unset."""


def test_qdrant_is_not_published_on_the_host():
    qdrant = _compose()["services"]["qdrant"]
    assert "ports" not in qdrant  # reach it from the workers, on the compose network only
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"


def test_every_secret_is_a_required_variable_without_a_default():
    secrets = {
        (service, key): value
        for service, spec in _compose()["services"].items()
        for key, value in spec.get("environment", {}).items()
        if any(word in key.upper() for word in SECRET_WORDS)
    }
    assert {key for _, key in secrets} >= {
        "QDRANT__SERVICE__API_KEY",
        "MEMSTREAM_STORE__API_KEY",
        "MEMSTREAM_AUTH__ADMIN_KEY",
    }
    for (service, key), value in secrets.items():
        match = REQUIRED.match(str(value))
        assert match, f"{service}.{key} = {value!r} is not ${{VAR:?how to make one}}"
        assert "openssl rand" in match["message"], f"{service}.{key}: the message should say how to make a key"
    assert "change-me" not in (ROOT / "docker-compose.yml").read_text()


def test_http_api_authentication_is_not_switched_off():
    for name, service in _compose()["services"].items():
        assert "MEMSTREAM_AUTH__MODE" not in service.get("environment", {}), name  # unset: auth on
