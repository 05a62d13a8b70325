"""Process and port helpers: find Java, spawn the daemon, check pids and ports, stop gracefully."""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from memstream.deploy.kafka.errors import KafkaStartError

_children: dict[int, subprocess.Popen[bytes]] = {}
"""Daemons spawned by this Python process, kept so that they are reaped (no zombies) once stopped."""


def java_executable(minimum: int = 17) -> str:
    """Path of a Java >= `minimum` (``$JAVA_HOME/bin/java`` or ``java`` on PATH)."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home and (Path(home) / "bin" / "java").exists() else shutil.which("java")
    if java is None:
        raise KafkaStartError(f"Java {minimum}+ is needed to run Kafka 4 and none was found (set JAVA_HOME or PATH)")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):
        major = int(match.group(2))
    if major < minimum:
        raise KafkaStartError(f"{java} is Java {major or '?'}; Kafka 4 needs Java {minimum}+ (set JAVA_HOME)")
    return java


def spawn(cmd: list[str], log_file: Path, cwd: Path) -> int:
    """Start `cmd` detached (own session, stdout+stderr to `log_file`) and return its pid."""
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
        )
    _children[proc.pid] = proc
    return proc.pid


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a live (non-zombie) process."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        _children.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def cmdline_contains(pid: int, *needles: str) -> bool:
    """Whether the command line of `pid` contains every needle (True where /proc is unavailable)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return True
    text = [a.decode(errors="replace") for a in args]
    return all(any(needle in arg for arg in text) for needle in needles)


def read_pid(pid_file: Path) -> int | None:
    """Pid stored in `pid_file`, or None."""
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_free(host: str, port: int) -> bool:
    """Whether host:port can be bound (as the JVM binds it, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def stop(pid: int, timeout: float = 30.0) -> bool:
    """SIGTERM `pid`, wait up to `timeout` s for it to exit, then SIGKILL; True if it exited gracefully."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return False
