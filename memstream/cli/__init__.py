"""The `memstream` command line (needs the ``worker`` extra: Typer, Rich and the worker's packages)."""

from __future__ import annotations

import sys

from memstream._extras import MissingExtra
from memstream.cli.source_tree import NoSourceCheckout


def main() -> None:
    """Entry point of the `memstream` command: a missing extra or source checkout is one clear line."""
    try:
        from memstream.cli.commands import app

        app()
    except (MissingExtra, NoSourceCheckout) as exc:
        print(f"memstream: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
