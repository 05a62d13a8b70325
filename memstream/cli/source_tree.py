"""The benchmarks and evaluations (``bench/``) live in the source checkout only, not in the wheel: the
``memstream bench …`` and ``memstream eval …`` commands import them from the checkout this memstream runs
from (the README's set-up: an editable install), and say what to do where there is none."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

from memstream._extras import require

CHECKOUT = Path(__file__).resolve().parents[2]
"""The repository root when memstream runs from a source checkout (memstream/cli/ is two levels below it)."""


class NoSourceCheckout(RuntimeError):
    """bench/ is not where a source checkout keeps it."""


def bench_module(name: str, *, extra: str | None = None) -> ModuleType:
    """``bench.<name>`` from the source checkout (after checking `extra`'s packages are installed)."""
    if not (CHECKOUT / "bench" / "__init__.py").is_file():
        raise NoSourceCheckout(
            "benchmarks and evaluations run from a source checkout (bench/ is not installed with the package): "
            "git clone the memstream repository, run `make install` there and use its .venv/bin/memstream"
        )
    if extra:
        require(extra, f"bench.{name}")
    if str(CHECKOUT) not in sys.path:
        sys.path.append(str(CHECKOUT))
    return importlib.import_module(f"bench.{name}")
