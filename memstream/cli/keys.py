"""``memstream keys create|list|revoke``: the API keys of a deployment, on its compacted ``access`` topic.

A key is printed once, at creation; the topic keeps only its SHA-256. Workers pick up a new or revoked key
within about a second. The Kafka connection comes from ``MEMSTREAM_KAFKA__*`` (under ACLs, only the
operator may write the topic; see deploy/k8s/README.md)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated

import typer
from pydantic import ValidationError

from memstream.streams.access import AccessKey, Scope, new_key, publish_key, read_keys
from memstream.streams.codec import validation_reason
from memstream.streams.settings import kafka_settings

app = typer.Typer(help="API keys of the HTTP API (stored hashed on the access topic).", no_args_is_help=True)


def _scopes(text: str) -> list[Scope]:
    try:
        return [Scope(s.strip()) for s in text.split(",") if s.strip()]
    except ValueError:
        raise typer.BadParameter(f"scopes are a comma-separated list of {', '.join(s.value for s in Scope)}") from None


@app.command("create")
def create(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant the key acts for")],
    user: Annotated[str | None, typer.Option("--user", help="Bind the key to this user of the tenant")] = None,
    scope: Annotated[str, typer.Option("--scope", help="Comma-separated: read, write, forget, admin")] = "read",
    label: Annotated[str, typer.Option("--label", help="A note for `keys list` (who holds it)")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the key and its record as JSON")] = False,
) -> None:
    """Create a key and print it (once: it is not stored, only its SHA-256 is)."""
    try:
        token, record = new_key(tenant, _scopes(scope), user_id=user, label=label)
    except ValidationError as exc:
        raise typer.BadParameter(validation_reason(exc)) from None

    asyncio.run(publish_key(kafka_settings(), record))
    if as_json:
        typer.echo(json.dumps({"key": token, **record.model_dump(mode="json", exclude={"secret_sha256"})}))
    else:
        typer.echo(token)
        typer.echo(f"key {record.key_id}: tenant {tenant}, user {user or '*'}, scopes {scope} (shown once)", err=True)


def _listing(keys: dict[str, AccessKey], tenant: str | None, revoked: bool) -> list[AccessKey]:
    chosen = [k for k in keys.values() if (tenant is None or k.tenant_id == tenant) and (revoked or k.active)]
    return sorted(chosen, key=lambda k: (k.tenant_id, k.created_at))


@app.command("list")
def list_keys(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's keys")] = None,
    revoked: Annotated[bool, typer.Option("--revoked", help="Include revoked keys")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False,
) -> None:
    """List keys (never their secrets)."""

    for key in _listing(asyncio.run(read_keys(kafka_settings())), tenant, revoked):
        if as_json:
            typer.echo(key.model_dump_json(exclude={"secret_sha256"}))
            continue
        state = "active" if key.active else time.strftime("revoked %Y-%m-%d %H:%M", time.gmtime(key.revoked_at))
        scopes = ",".join(key.scopes)
        typer.echo(f"{key.key_id}  {key.tenant_id:<16} {key.user_id or '*':<16} {scopes:<22} {state}  {key.label}")


@app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (`keys list`, or the part after msk_)")]) -> None:
    """Revoke a key: every worker refuses it within about a second."""
    key_id = key_id.removeprefix("msk_").split("_")[0]

    async def run() -> AccessKey:
        kafka = kafka_settings()
        key = (await read_keys(kafka)).get(key_id)
        if key is None:
            raise typer.BadParameter(f"no key {key_id!r} on {kafka.topics.access}")
        if not key.active:
            return key
        revoked = key.revoked()
        await publish_key(kafka, revoked)
        return revoked

    key = asyncio.run(run())
    typer.echo(f"revoked {key.key_id} (tenant {key.tenant_id})")
