"""What every ONNX model of memstream shares: graphs built once into the cache, checksummed and tied to
their builder's version (one builder at a time across processes), and the choice of execution provider
and CPU threads."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from memstream.models.assets import cache_dir, file_lock, sha256_file

log = logging.getLogger(__name__)


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def is_current(path: Path, builder: str) -> bool:
    """The graph exists, its checksum matches, and it was written by builder version ``builder``."""
    check = checksum_path(path)
    if not path.exists() or not check.exists():
        return False
    fields = check.read_text().split()
    return len(fields) >= 3 and fields[0] == sha256_file(path) and fields[2] == f"builder={builder}"


def write_checksum(path: Path, builder: str) -> None:
    checksum_path(path).write_text(f"{sha256_file(path)}  {path.name}  builder={builder}\n")


def write_atomically(path: Path, data: bytes, builder: str) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, then its checksum file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    write_checksum(path, builder)


def build_lock() -> AbstractContextManager[None]:
    """One builder at a time across processes (workers starting together build once)."""
    return file_lock(cache_dir() / "models" / ".build.lock")


def ensure_built(
    path: Path, current: Callable[[], bool], build: Callable[[], None], what: str, *, force: bool = False
) -> Path:
    """``path`` once ``current()`` holds, running ``build()`` first (under the build lock) when it does not
    or when ``force``d."""
    if not force and current():
        return path
    with build_lock():
        if force or not current():
            log.info("building %s into %s (once) …", what, path)
            build()
    return path


def available_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def choose_providers(requested: str) -> list[str]:
    """onnxruntime providers for ``auto``/``cpu``/``cuda``: CUDA first when onnxruntime has it, else CPU
    (with a warning when CUDA was asked for)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if requested == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if requested == "cuda":
        log.warning("provider 'cuda' requested but onnxruntime has no CUDAExecutionProvider (CUDA absent); using CPU")
    else:
        log.info("CUDA absent (onnxruntime providers: %s); using CPU", ", ".join(available))
    return ["CPUExecutionProvider"]
