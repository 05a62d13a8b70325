"""`memstream keys create|list|revoke` against the real broker: keys land hashed on the access topic."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from memstream.cli.commands import app
from memstream.streams.access import parse_key, read_keys
from tests.integration.harness import Namespace

pytestmark = pytest.mark.integration


def test_create_list_revoke(kafka_bootstrap, tmp_path, monkeypatch):
    ns = Namespace(kafka_bootstrap, tmp_path)
    for name, value in ns.env.items():
        monkeypatch.setenv(name, value)
    from memstream.streams.settings import client_settings

    client_settings.cache_clear()
    runner = CliRunner()
    try:
        made = runner.invoke(app, ["keys", "create", "--tenant", "acme", "--user", "alice", "--scope", "read,forget"])
        assert made.exit_code == 0, made.output
        token = made.stdout.strip().splitlines()[0]
        key_id, secret = parse_key(token)
        stored = asyncio.run(read_keys(ns.kafka))[key_id]
        assert (stored.tenant_id, stored.user_id, [s.value for s in stored.scopes]) == (
            "acme",
            "alice",
            ["forget", "read"],
        )
        assert stored.matches(secret) and secret not in stored.model_dump_json()

        listed = runner.invoke(app, ["keys", "list", "--json"])
        assert listed.exit_code == 0 and key_id in listed.stdout and "secret" not in listed.stdout
        assert runner.invoke(app, ["keys", "revoke", token]).exit_code == 0
        assert not asyncio.run(read_keys(ns.kafka))[key_id].active
        active = runner.invoke(app, ["keys", "list", "--json"]).stdout
        assert key_id not in active
        revoked = [
            json.loads(line) for line in runner.invoke(app, ["keys", "list", "--revoked", "--json"]).stdout.splitlines()
        ]
        assert [k["key_id"] for k in revoked] == [key_id] and revoked[0]["revoked_at"] is not None

        bad = runner.invoke(app, ["keys", "create", "--tenant", "acme", "--scope", "reed"])
        assert bad.exit_code != 0 and "scopes are a comma-separated list" in bad.output
        assert runner.invoke(app, ["keys", "revoke", "0123456789abcdef"]).exit_code != 0
    finally:
        client_settings.cache_clear()
