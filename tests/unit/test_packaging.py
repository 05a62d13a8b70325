"""The distribution: one `memstream` namespace, a light public client, layers that import top-down."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("streams", "agents", "models", "deploy")
HEAVY = ("numpy", "onnxruntime", "qdrant_client", "qdrant_edge", "faust", "tokenizers", "Stemmer", "sklearn")

ALLOWED_IMPORTS: dict[str, set[str]] = {
    # layer -> the memstream sub-packages it may import (itself included); the CLI (memstream/cli) is on top
    "models": {"models"},
    "streams": {"streams"},
    "deploy": {"deploy", "models", "streams"},
    "agents": {"agents", "models", "streams"},
}


def _python_files(*folders: str) -> list[Path]:
    return [p for folder in folders for p in sorted((ROOT / folder).rglob("*.py"))]


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_no_bare_imports_of_the_repository_folders() -> None:
    """`import streams` (or agents, models, deploy) works only from a source checkout's root and would clash
    with other distributions' packages: everything imports memstream.<folder>. Only bench imports bench."""
    bare = []
    for path in _python_files("memstream", *LAYERS, "tests", "bench"):
        for line, module in _imported_modules(path):
            top = module.split(".")[0]
            if top in LAYERS or (top == "bench" and path.parts[len(ROOT.parts)] not in ("bench", "tests")):
                bare.append(f"{path.relative_to(ROOT)}:{line}: import {module}")
    assert not bare, "bare imports (use memstream.<folder>):\n" + "\n".join(bare)


def test_layers_import_top_down() -> None:
    """streams/ (the wire) and models/ (the algorithms) import nothing above them; the worker never imports the
    CLI; nothing imports bench/ except the CLI, through its source-checkout loader."""
    wrong = []
    for layer, allowed in ALLOWED_IMPORTS.items():
        for path in _python_files(layer):
            for line, module in _imported_modules(path):
                parts = module.split(".")
                sub = parts[1] if parts[0] == "memstream" and len(parts) > 1 else None
                if sub in (*LAYERS, "cli") and sub not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)}:{line}: {layer} imports {module}")
    assert not wrong, "\n".join(wrong)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")


def test_the_public_client_api_imports_no_worker_dependency() -> None:
    code = (
        "import sys\n"
        "from memstream import (Publisher, subscribe, MemoryClient, AsyncMemoryClient, InteractionEvent,\n"
        "    FeedbackEvent, MemoryUpdate, __version__)\n"
        "InteractionEvent(event_id='e1', tenant_id='t', user_id='u', session_id='s', ts=1.0, text='hi')\n"
        "MemoryClient('http://127.0.0.1:1').close()\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"the client imported worker packages: {result.stdout}"


def test_the_client_works_where_the_worker_packages_are_not_installed() -> None:
    """With numpy, faust, onnxruntime, qdrant… unimportable (a base install), the public API still imports and
    validates; importing the worker fails with an ImportError that names the extra to install."""
    code = (
        "import sys\n"
        f"for name in {HEAVY!r}:\n"
        "    sys.modules[name] = None  # what Python does for a package that is not installed: import fails\n"
        "import memstream\n"
        "from memstream import InteractionEvent, InvalidRecord, Publisher, MemoryClient\n"
        "try:\n"
        "    InteractionEvent(event_id='e1', tenant_id='bad tenant!', user_id='u', session_id='s', ts=1.0, text='x')\n"
        "except Exception as exc:\n"
        "    print('rejected', type(exc).__name__)\n"
        "try:\n"
        "    import memstream.agents.app\n"
        "except ImportError as exc:\n"
        "    print('worker:', exc)\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert "rejected ValidationError" in result.stdout
    assert "worker: memstream.agents (the worker) needs the 'worker' extra" in result.stdout
    assert "pip install 'memstream[worker]'" in result.stdout


def test_public_api_is_small_and_typed() -> None:
    import memstream

    assert len(memstream.__all__) <= 12
    for name in memstream.__all__:
        assert getattr(memstream, name) is not None
    assert (ROOT / "memstream" / "py.typed").is_file()
    with pytest.raises(AttributeError):
        _ = memstream.Segmenter  # type: ignore[attr-defined]


@pytest.mark.slow
def test_the_wheel_holds_only_the_memstream_namespace(tmp_path: Path) -> None:
    """Built from a copy of the checkout's files (a build directory left in the checkout would leak stale files)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    source = tmp_path / "source"
    for name in listed:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    build = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = tmp_path.glob("memstream-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"memstream"}, tops
    packages = sorted({name.rsplit("/", 1)[0] for name in names if name.endswith("/__init__.py")})
    assert packages == [
        "memstream",
        "memstream/agents",
        "memstream/agents/auth",
        "memstream/agents/store",
        "memstream/cli",
        "memstream/deploy",
        "memstream/deploy/kafka",
        "memstream/models",
        "memstream/streams",
    ]
    for expected in (
        "memstream/py.typed",
        "memstream/streams/contracts.py",
        "memstream/streams/schemas/interaction.v1.json",
        "memstream/cli/samples/conversation.jsonl",
        "memstream/deploy/kafka/pom.xml",
        "memstream/deploy/kafka/log4j2.properties",
        "memstream/agents/app.py",
    ):
        assert expected in names
    assert not [n for n in names if "bench" in n.split("/") or "k8s" in n or "grafana" in n or "Dockerfile" in n]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "memstream = memstream.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_worker_image_copies_every_installed_folder_and_no_benchmarks() -> None:
    import tomllib

    package_dirs = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values()
    )
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    copied = {line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")}
    assert package_dirs <= copied, package_dirs - copied
    assert "bench" not in copied
    assert 'pip install ".[worker]"' in dockerfile


def test_the_command_line_runs_and_names_its_commands() -> None:
    memstream = Path(sys.executable).parent / "memstream"
    for command in ([str(memstream), "--help"], [sys.executable, "-m", "memstream.cli", "--help"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd="/")
        assert result.returncode == 0, result.stderr
        assert all(name in result.stdout for name in ("worker", "publish", "recall", "eval", "bench", "kafka"))


def test_bench_and_eval_commands_say_what_to_do_without_a_source_checkout(tmp_path: Path) -> None:
    """Installed from a wheel, bench/ is absent: the command says how to get it instead of a traceback."""
    code = (
        "import sys\n"
        "import memstream.cli.source_tree as tree\n"
        f"tree.CHECKOUT = __import__('pathlib').Path({str(tmp_path)!r})\n"
        "sys.argv = ['memstream', 'eval', 'recall', '--input', '/dev/null']\n"
        "from memstream.cli import main\n"
        "main()\n"
    )
    result = _run(code)
    assert result.returncode == 2
    assert "benchmarks and evaluations run from a source checkout" in result.stderr
    assert "Traceback" not in result.stderr
