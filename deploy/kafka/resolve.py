"""Resolve the Kafka broker jars (kafka_2.13 + runtime deps + Log4j 2 binding) from Maven, cached once."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from importlib import resources
from pathlib import Path

from memstream.deploy.kafka.config import default_version
from memstream.deploy.kafka.errors import KafkaResolveError
from memstream.deploy.kafka.progress import Progress
from memstream.models.assets import cache_dir, file_lock

ARTIFACT = "org.apache.kafka:kafka_2.13"
_MARKER = ".complete"
_REQUIRED = ("kafka_2.13-{version}.jar", "kafka-clients-{version}.jar", "log4j-core-", "log4j-slf4j-impl-")


def libs_dir(version: str | None = None) -> Path:
    """Cache folder holding the jars of one Kafka version (``<memstream cache>/kafka/<version>/libs``)."""
    return cache_dir() / "kafka" / (version or default_version()) / "libs"


def cached_jars(version: str | None = None) -> Path | None:
    """The libs folder if a complete earlier resolution is cached, else None."""
    libs = libs_dir(version)
    marker = libs / _MARKER
    if not marker.exists():
        return None
    names = [n for n in marker.read_text().split() if n]
    if not names or not all((libs / n).is_file() for n in names):
        return None
    return libs


def _missing(libs: Path, version: str) -> list[str]:
    names = [p.name for p in libs.glob("*.jar")]
    wanted = [pattern.format(version=version) for pattern in _REQUIRED]
    return [w for w in wanted if not any(n.startswith(w) for n in names)]


def _maven_errors(lines: list[str]) -> str:
    errors = [ln.removeprefix("[ERROR]").strip() for ln in lines if ln.startswith("[ERROR]")]
    errors = [e for e in errors if e and not e.startswith(("->", "To see", "Re-run", "For more", "[Help"))]
    return "\n".join(errors[:6]) or "\n".join(lines[-15:])


def resolve_jars(version: str | None = None, progress: Progress | None = None) -> Path:
    """Folder of every jar the broker needs; runs ``mvn dependency:copy-dependencies`` the first time only."""
    version = version or default_version()
    progress = progress or Progress(enabled=False)
    cached = cached_jars(version)
    if cached is not None:
        return cached
    with file_lock(libs_dir(version).parent / ".lock"):  # one resolver per version at a time
        return cached_jars(version) or _resolve(version, progress)


def _resolve(version: str, progress: Progress) -> Path:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaResolveError(
            f"Maven (`mvn`) is not on PATH; it is needed once to fetch {ARTIFACT}:{version} and its "
            "dependencies from Maven Central (install it, e.g. `apt-get install maven`)"
        )
    libs = libs_dir(version)
    work = libs.parent / f"resolve-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "libs").mkdir(parents=True)
    pom = work / "pom.xml"
    pom.write_bytes(resources.files("memstream.deploy.kafka").joinpath("pom.xml").read_bytes())
    cmd = [
        mvn, "-B", "-f", str(pom), f"-Dkafka.version={version}",
        "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={work / 'libs'}",
    ]  # fmt: skip
    start = time.monotonic()
    lines: list[str] = []
    downloaded = 0
    with progress.step(f"resolving {ARTIFACT}:{version} from Maven (first run only) …") as step:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=work)
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = re.sub(r"\x1b\[[0-9;]*m", "", raw.rstrip())
            lines.append(line)
            if "Downloaded from" in line[:40]:
                downloaded += 1
                step.update(
                    f"resolving {ARTIFACT}:{version} from Maven … {downloaded} files, {time.monotonic() - start:.0f} s"
                )
        code = proc.wait()
    if code != 0:
        shutil.rmtree(work, ignore_errors=True)
        raise KafkaResolveError(
            f"could not resolve {ARTIFACT}:{version} (with its runtime dependencies and "
            f"org.apache.logging.log4j:log4j-slf4j-impl) from Maven, `mvn` exit {code}:\n{_maven_errors(lines)}"
        )
    missing = _missing(work / "libs", version)
    if missing:
        shutil.rmtree(work, ignore_errors=True)
        raise KafkaResolveError(f"Maven resolved {ARTIFACT}:{version} but these jars are missing: {missing}")
    jars = sorted(p.name for p in (work / "libs").glob("*.jar"))
    (work / "libs" / _MARKER).write_text("\n".join(jars) + "\n")
    shutil.rmtree(libs, ignore_errors=True)
    os.replace(work / "libs", libs)
    shutil.rmtree(work, ignore_errors=True)
    size = sum((libs / n).stat().st_size for n in jars) / 1e6
    progress.info(f"resolved {len(jars)} jars ({size:.0f} MB) in {time.monotonic() - start:.1f} s → {libs}")
    return libs
