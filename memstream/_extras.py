"""Which optional dependencies ("extras") a part of memstream needs, checked before it is imported.

The base install is the client (publish, subscribe, the HTTP client). A module that needs more calls
``require("worker", …)`` at import, so a missing package is an ImportError naming the extra to install
instead of a ModuleNotFoundError from deep inside a dependency.
"""

from __future__ import annotations

import sys
from importlib.util import find_spec

EXTRAS: dict[str, tuple[str, ...]] = {
    "worker": (
        "faust",
        "numpy",
        "onnxruntime",
        "qdrant_client",
        "qdrant_edge",
        "tokenizers",
        "Stemmer",
        "typer",
        "rich",
        "prometheus_client",
    ),
    "eval": ("sklearn", "nltk", "rank_bm25"),
}
"""Import names of each extra's packages (as ``pyproject.toml`` lists them)."""


class MissingExtra(ImportError):
    """A part of memstream was imported without the optional dependencies it needs."""


def missing(extra: str) -> list[str]:
    """The import names of `extra`'s packages that are not installed."""
    return [name for name in EXTRAS[extra] if sys.modules.get(name) is None and find_spec(name) is None]


def require(extra: str, part: str) -> None:
    """Raise MissingExtra naming the extra (and what is missing) unless `extra`'s packages are installed."""
    absent = missing(extra)
    if absent:
        raise MissingExtra(
            f"{part} needs the '{extra}' extra (missing: {', '.join(absent)}): pip install 'memstream[{extra}]'"
        )
