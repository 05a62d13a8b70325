"""``LocalKafka``: one single-node KRaft Apache Kafka broker run as a background daemon on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from memstream.deploy.kafka import process
from memstream.deploy.kafka.auth import ADMIN, Credentials, component_acls, create_acls, load_or_create_credentials
from memstream.deploy.kafka.config import (
    DEFAULT_HEAP,
    DEFAULT_HOST,
    BrokerFiles,
    cluster_id,
    default_controller_port,
    default_data_dir,
    default_port,
    default_version,
    server_properties,
)
from memstream.deploy.kafka.errors import KafkaLocalError, KafkaStartError, PortInUseError
from memstream.deploy.kafka.probe import cluster_info, run_sync
from memstream.deploy.kafka.progress import Progress
from memstream.deploy.kafka.resolve import resolve_jars
from memstream.models.assets import file_lock
from memstream.streams.settings import KafkaSettings


@dataclass(frozen=True)
class KafkaStatus:
    """What `status` reports about the broker of one data dir."""

    running: bool
    ready: bool
    pid: int | None
    version: str | None
    bootstrap: str
    data_dir: str
    log_file: str
    cluster_id: str | None
    auth: bool = False
    credentials_file: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable)."""
        return asdict(self)

    def lines(self) -> list[str]:
        """Human-readable lines for the CLI."""
        state = "running" + ("" if self.ready else " (not answering yet)") if self.running else "not running"
        return [
            f"status:    {state}",
            f"pid:       {self.pid if self.running else '-'}",
            f"version:   {self.version or '-'}",
            f"bootstrap: {self.bootstrap}",
            f"cluster:   {self.cluster_id or '-'}",
            f"data dir:  {self.data_dir}",
            f"log:       {self.log_file}",
            *(
                [f"auth:      SASL_PLAINTEXT SCRAM-SHA-512, ACLs; credentials {self.credentials_file}"]
                if self.auth
                else []
            ),
        ]


class LocalKafka:
    """A local Kafka 4.x broker+controller (KRaft) whose jars come from Maven Central; sync API.

    With ``auth=True`` (``memstream kafka up --auth``) the broker takes SASL_PLAINTEXT SCRAM-SHA-512 only and
    authorizes with ACLs: random passwords per data dir in ``credentials.json`` (mode 0600), the users and
    ACLs of :mod:`memstream.deploy.kafka.auth`, granted at every `up` for `topic_prefix` and `app_id`. Its
    defaults (data dir ``<cache>/kafka-auth-data``, port 9096) let it run beside the plain broker.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        controller_port: int | None = None,
        *,
        version: str | None = None,
        host: str = DEFAULT_HOST,
        heap: str | None = None,
        progress: bool = True,
        auth: bool = False,
        topic_prefix: str = "memstream.",
        app_id: str = "memstream",
    ) -> None:
        self.auth = auth
        self.topic_prefix, self.app_id = topic_prefix, app_id
        self.data_dir = Path(data_dir).expanduser().resolve() if data_dir else default_data_dir(auth)
        self.port = port or default_port(auth)
        self.controller_port = controller_port or default_controller_port(self.port, auth)
        if self.port == self.controller_port:
            raise ValueError(f"broker and controller ports must differ (both {self.port})")
        self.version = version or default_version()
        self.host = host
        self.heap = heap or DEFAULT_HEAP
        self.files = BrokerFiles(self.data_dir)
        self.progress = Progress(enabled=progress)

    @property
    def bootstrap(self) -> str:
        """``host:port`` clients should use (of the running broker if there is one)."""
        state = self._state()
        if state and self._running_pid() is not None:
            return str(state["bootstrap"])
        return f"{self.host}:{self.port}"

    # -- credentials -------------------------------------------------------------------------------------

    @property
    def credentials(self) -> Credentials:
        """Passwords of an --auth broker's users (generated at the first `up`)."""
        if not self.auth:
            raise KafkaLocalError(f"the broker of {self.data_dir} runs without --auth: it has no credentials")
        if not self.files.credentials_file.exists():
            raise KafkaLocalError(f"no {self.files.credentials_file} yet: run `memstream kafka up --auth` first")
        return load_or_create_credentials(self.files.credentials_file)

    def _security(self) -> dict[str, Any] | None:
        if not self.auth or not self.files.credentials_file.exists():
            return None
        return self.credentials.client_kwargs(self.bootstrap, ADMIN)

    def kafka_settings(self, user: str, **overrides: Any) -> KafkaSettings:
        """Client settings that reach this broker as `user` (``admin``, ``worker``, ``publisher``,
        ``subscriber``; with auth), or without credentials (plain broker; `user` ignored)."""
        if not self.auth:
            return KafkaSettings(bootstrap=self.bootstrap, **overrides)
        env = self.credentials.env(self.bootstrap, user)
        return KafkaSettings(
            bootstrap=self.bootstrap,
            security_protocol=env["MEMSTREAM_KAFKA__SECURITY_PROTOCOL"],
            sasl_mechanism=env["MEMSTREAM_KAFKA__SASL_MECHANISM"],
            sasl_username=user,
            sasl_password=env["MEMSTREAM_KAFKA__SASL_PASSWORD"],
            **overrides,
        )

    def client_env(self, user: str) -> dict[str, str]:
        """The ``MEMSTREAM_KAFKA__*`` variables of a process that reaches this broker as `user` (with auth)."""
        return self.credentials.env(self.bootstrap, user)

    def grant(self, topic_prefix: str | None = None, app_id: str | None = None, *, exactly_once: bool = True) -> None:
        """Create the components' ACLs (deploy.kafka.auth.component_acls) for one topic prefix and worker app
        id on the running --auth broker; harmless when they exist."""
        prefix, app = topic_prefix or self.topic_prefix, app_id or self.app_id
        rules = component_acls(prefix, app, exactly_once=exactly_once)
        admin = self.credentials.client_kwargs(self.bootstrap, ADMIN)
        with self.progress.step(f"granting {len(rules)} ACLs for topic prefix {prefix!r}, app id {app!r} …"):
            run_sync(create_acls(admin, rules))

    # -- state -------------------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.files.state_file.read_text())
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def _running_pid(self) -> int | None:
        pid = process.read_pid(self.files.pid_file)
        if pid is None or not process.pid_alive(pid):
            return None
        if not process.cmdline_contains(pid, "kafka.Kafka", str(self.files.server_properties)):
            return None  # pid reused by an unrelated process
        return pid

    def _clear_pid(self) -> None:
        for path in (self.files.pid_file, self.files.state_file):
            path.unlink(missing_ok=True)

    def is_running(self) -> bool:
        """Whether this data dir's broker process is alive."""
        return self._running_pid() is not None

    def status(self, probe_timeout: float = 3.0) -> KafkaStatus:
        """Running or not, pid, version, bootstrap (``ready`` = it answered a Metadata request)."""
        pid = self._running_pid()
        state = self._state() if pid is not None else None
        bootstrap = str(state["bootstrap"]) if state else f"{self.host}:{self.port}"
        ready = pid is not None and cluster_info(bootstrap, probe_timeout, self._security()) is not None
        cid = self.files.cluster_id_file.read_text().strip() if self.files.cluster_id_file.exists() else None
        return KafkaStatus(
            running=pid is not None,
            ready=ready,
            pid=pid,
            version=str(state["version"]) if state else None,
            bootstrap=bootstrap,
            data_dir=str(self.data_dir),
            log_file=str(self.files.log_file),
            cluster_id=cid,
            auth=self.auth,
            credentials_file=str(self.files.credentials_file) if self.auth else None,
        )

    # -- up ----------------------------------------------------------------------------------------------

    def up(self, timeout: float = 90.0) -> str:
        """Start the broker (resolving jars and formatting storage if needed), wait until ready, return bootstrap.

        Harmless if this data dir's broker already runs. Raises PortInUseError, KafkaResolveError, KafkaStartError.
        """
        deadline = time.monotonic() + timeout
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.data_dir / ".lock"):  # one `up`/`down` per data dir at a time
            return self._up(deadline)

    def _up(self, deadline: float) -> str:
        pid = self._running_pid()
        if pid is not None:
            return self._already_running(pid, deadline)
        self._clear_pid()
        self._check_mode()
        self._check_ports()
        libs = resolve_jars(self.version, self.progress)
        java = process.java_executable()
        credentials = load_or_create_credentials(self.files.credentials_file) if self.auth else None
        self._write_config(credentials)
        cid = cluster_id(self.files)
        if not self.files.meta_properties.exists():
            self._format(java, libs, cid, deadline, credentials)
        self._check_ports()
        self._rotate_log()
        cds_options, cds_tmp = self._cds_options(libs)
        cmd = [java, *self._jvm_options(), *cds_options, "-cp", str(libs / "*"), "kafka.Kafka"]
        cmd.append(str(self.files.server_properties))
        started = time.monotonic()
        pid = process.spawn(cmd, self.files.log_file, self.data_dir)
        self.files.pid_file.write_text(f"{pid}\n")
        state = {
            "pid": pid,
            "version": self.version,
            "bootstrap": f"{self.host}:{self.port}",
            "port": self.port,
            "controller_port": self.controller_port,
            "cluster_id": cid,
            "auth": self.auth,
            "started_at": time.time(),
            "cds_dump": str(cds_tmp) if cds_tmp else None,
        }
        self.files.state_file.write_text(json.dumps(state, indent=2) + "\n")
        try:
            self._wait_ready(pid, cid, deadline, started)
            if self.auth:
                self.grant()
        except BaseException:
            process.stop(pid, timeout=10)
            self._finish_cds(state, keep=False)
            self._clear_pid()
            raise
        return f"{self.host}:{self.port}"

    def _already_running(self, pid: int, deadline: float) -> str:
        state = self._state() or {}
        bootstrap = str(state.get("bootstrap", f"{self.host}:{self.port}"))
        if state.get("port") not in (None, self.port):
            raise KafkaLocalError(
                f"the broker of {self.data_dir} already runs on {bootstrap} (pid {pid}), not port {self.port}; "
                "use that address, or `down` it first"
            )
        if bool(state.get("auth")) != self.auth:
            raise KafkaLocalError(
                f"the broker of {self.data_dir} already runs {'with' if state.get('auth') else 'without'} --auth "
                f"on {bootstrap} (pid {pid}); use another data dir, or `down` it first"
            )
        self._wait_ready(pid, str(state.get("cluster_id", "")) or None, deadline, time.monotonic(), quiet=True)
        self.progress.info(f"Kafka {state.get('version', '?')} already running on {bootstrap} (pid {pid})")
        if self.auth:
            self.grant()
        return bootstrap

    def _check_mode(self) -> None:
        """A data dir formatted with --auth stays an --auth one, and a plain one plain."""
        has_credentials = self.files.credentials_file.exists()
        formatted = self.files.meta_properties.exists()
        if self.auth and formatted and not has_credentials:
            raise KafkaStartError(
                f"{self.data_dir} holds a broker formatted without --auth; run `up --auth` with another data dir "
                f"(--data-dir), or `up` without --auth"
            )
        if not self.auth and has_credentials:
            raise KafkaStartError(
                f"{self.data_dir} holds an --auth broker ({self.files.credentials_file}); run `up --auth`, or use "
                "another data dir"
            )

    def _check_ports(self) -> None:
        hints = {
            "broker": "--port / MEMSTREAM_KAFKA_PORT",
            "controller": "--controller-port / MEMSTREAM_KAFKA_CONTROLLER_PORT; default broker port + 1",
        }
        for name, port in (("broker", self.port), ("controller", self.controller_port)):
            if not process.port_free(self.host, port):
                raise PortInUseError(
                    f"{self.host}:{port} ({name} port) is already in use by another process, not by the broker "
                    f"of {self.data_dir}; stop that process or choose another port ({hints[name]})"
                )

    def _write_config(self, credentials: Credentials | None = None) -> None:
        self.files.log_dirs.mkdir(parents=True, exist_ok=True)
        text = server_properties(
            self.files, host=self.host, port=self.port, controller_port=self.controller_port, auth=credentials
        )
        path = self.files.server_properties
        path.unlink(missing_ok=True)  # created anew, so that the mode applies (it holds passwords with auth)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if credentials else 0o644)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        config = resources.files("memstream.deploy.kafka").joinpath("log4j2.properties").read_bytes()
        self.files.log4j_config.write_bytes(config)

    def _jvm_options(self, heap: str | None = None) -> list[str]:
        heap_opts = os.environ.get("KAFKA_HEAP_OPTS", "").split() or [f"-Xmx{heap or self.heap}", "-Xms128m"]
        return [
            *heap_opts,
            "-XX:+UseSerialGC",
            # C1 only: about half the start-up CPU on 2 cores, and no slower with Python clients
            # (override with MEMSTREAM_KAFKA_JVM_OPTS=-XX:TieredStopAtLevel=4).
            "-XX:TieredStopAtLevel=1",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.files.log4j_config}",
            f"-Dkafka.logs.dir={self.data_dir}",
            *os.environ.get("MEMSTREAM_KAFKA_JVM_OPTS", "").split(),
        ]

    def _cds_options(self, libs: Path) -> tuple[list[str], Path | None]:
        """AppCDS: reuse the cached class archive, or have this run dump one at its graceful exit."""
        if os.environ.get("MEMSTREAM_KAFKA_CDS", "1") == "0":
            return [], None
        archive = libs.parent / "kafka-cds.jsa"
        if archive.exists():
            return [f"-XX:SharedArchiveFile={archive}"], None
        dump = libs.parent / f"kafka-cds-{uuid.uuid4().hex[:8]}.jsa.tmp"
        return [f"-XX:ArchiveClassesAtExit={dump}"], dump

    def _finish_cds(self, state: dict[str, Any] | None, keep: bool) -> None:
        dump = Path(state["cds_dump"]) if state and state.get("cds_dump") else None
        if dump is None or not dump.exists():
            return
        if keep and dump.stat().st_size > 0:
            os.replace(dump, dump.with_name("kafka-cds.jsa"))
        else:
            dump.unlink(missing_ok=True)

    def _format(self, java: str, libs: Path, cid: str, deadline: float, credentials: Credentials | None) -> None:
        cmd = [
            java, *self._jvm_options("256m"), "-cp", str(libs / "*"), "kafka.tools.StorageTool",
            "format", "--ignore-formatted", "-t", cid, "-c", str(self.files.server_properties),
        ]  # fmt: skip
        if credentials is not None:  # SCRAM users stored in the bootstrap metadata (KIP-900)
            cmd += credentials.scram_arguments()
        with self.progress.step(f"formatting KRaft storage in {self.files.log_dirs} (cluster {cid}) …"):
            try:
                result = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=max(10.0, deadline - time.monotonic())
                )
            except subprocess.TimeoutExpired as exc:
                raise KafkaStartError("formatting KRaft storage timed out") from exc
        if result.returncode != 0 or not self.files.meta_properties.exists():
            output = (result.stdout + result.stderr).strip()[-2000:]
            for secret in [*credentials.passwords.values(), credentials.controller_password] if credentials else []:
                output = output.replace(secret, "***")
            raise KafkaStartError(f"kafka.tools.StorageTool format failed (exit {result.returncode}):\n{output}")

    def _rotate_log(self) -> None:
        log = self.files.log_file
        if log.exists() and log.stat().st_size > 0:
            os.replace(log, log.with_name(log.name + ".1"))

    def _log_tail(self, lines: int = 25) -> str:
        try:
            text = self.files.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        errors = [ln for ln in text if " ERROR " in ln or "Exception" in ln]
        tail = text[-lines:]
        return "\n".join([*errors[:5], "…", *tail] if errors else tail)

    def _wait_ready(self, pid: int, cid: str | None, deadline: float, started: float, quiet: bool = False) -> None:
        bootstrap = f"{self.host}:{self.port}"
        message = f"starting Kafka {self.version} on {bootstrap} (pid {pid}) …"
        with self.progress.step(message) if not quiet else nullcontext(Progress(enabled=False)) as step:
            while True:
                if not process.pid_alive(pid):
                    raise KafkaStartError(
                        f"the Kafka broker (pid {pid}) exited during start-up; log {self.files.log_file}:\n"
                        + self._log_tail()
                    )
                if process.port_open(self.host, self.port):
                    info = cluster_info(bootstrap, timeout=2.0, security=self._security())
                    if info is not None and (cid is None or info.get("cluster_id") == cid):
                        break
                if time.monotonic() > deadline:
                    raise KafkaStartError(
                        f"the Kafka broker (pid {pid}) was not ready on {bootstrap} within the timeout; "
                        f"log {self.files.log_file}:\n" + self._log_tail()
                    )
                step.update(f"{message} {time.monotonic() - started:.0f} s")
                time.sleep(0.25)
        if not quiet:
            self.progress.info(f"Kafka {self.version} ready on {bootstrap} in {time.monotonic() - started:.1f} s")

    # -- down --------------------------------------------------------------------------------------------

    def down(self, timeout: float = 30.0) -> bool:
        """Stop the broker gracefully (SIGTERM, then SIGKILL after `timeout` s); False if it wasn't running."""
        if not self.data_dir.is_dir():
            self.progress.info(f"no broker running for {self.data_dir}")
            return False
        with file_lock(self.data_dir / ".lock"):
            return self._down(timeout)

    def _down(self, timeout: float) -> bool:
        pid = self._running_pid()
        if pid is None:
            self._clear_pid()
            self.progress.info(f"no broker running for {self.data_dir}")
            return False
        start = time.monotonic()
        state = self._state()
        with self.progress.step(f"stopping Kafka (pid {pid}) …"):
            graceful = process.stop(pid, timeout)
        self._finish_cds(state, keep=graceful)
        self._clear_pid()
        self.progress.info(f"stopped Kafka (pid {pid}) in {time.monotonic() - start:.1f} s")
        return True

    def __enter__(self) -> LocalKafka:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def __repr__(self) -> str:
        auth = ", auth=True" if self.auth else ""
        return f"LocalKafka(data_dir={str(self.data_dir)!r}, port={self.port}, version={self.version!r}{auth})"
