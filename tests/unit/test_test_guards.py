"""The suite's own guards (tests/conftest.py): every test has a time limit, and a test that lacks Java or a
broker skips on a developer machine but fails in CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import conftest

pytest_plugins = ["pytester"]


def test_every_test_gets_a_time_limit_unless_it_sets_one(pytester: pytest.Pytester) -> None:
    pytester.makeconftest((Path(__file__).parents[1] / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    integration: needs a broker\n")
    pytester.makepyfile(
        """
import pytest

def test_unit(): pass

@pytest.mark.integration
def test_integration(): pass

@pytest.mark.timeout(5)
def test_own_limit(): pass
"""
    )
    items, _ = pytester.inline_genitems()
    limits = {item.name: item.get_closest_marker("timeout").args[0] for item in items}
    assert limits == {
        "test_unit": conftest.TIME_LIMIT_S["other"],
        "test_integration": conftest.TIME_LIMIT_S["integration"],
        "test_own_limit": 5,
    }


def test_a_hung_test_fails(pytester: pytest.Pytester) -> None:
    pytester.makeconftest((Path(__file__).parents[1] / "conftest.py").read_text())
    pytester.makepyfile("import pytest, time\n@pytest.mark.timeout(1)\ndef test_hangs(): time.sleep(30)\n")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Timeout*"])


@pytest.mark.parametrize("ci", ["", "true"])
def test_no_java_skips_here_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    from memstream.deploy.kafka import process

    def no_java(minimum: int = 17) -> str:
        raise process.KafkaStartError("none was found")

    monkeypatch.setattr(process, "java_executable", no_java)
    monkeypatch.setenv("CI", ci) if ci else monkeypatch.delenv("CI", raising=False)
    expected = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(expected, match="needs Java 17"):
        conftest.require_java()


@pytest.mark.parametrize("ci", ["", "true"])
def test_no_broker_skips_here_and_fails_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    from memstream.deploy.workers import free_port

    pytester.makeconftest((Path(__file__).parents[1] / "conftest.py").read_text())
    pytester.makepyfile("def test_needs_a_broker(kafka_bootstrap): pass\n")
    monkeypatch.setenv("MEMSTREAM_TEST_BOOTSTRAP", f"127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("CI", ci) if ci else monkeypatch.delenv("CI", raising=False)
    result = pytester.runpytest_subprocess("-rs")
    if ci:
        result.assert_outcomes(errors=1)  # a failing fixture: the test errors, it is not skipped
    else:
        result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no Kafka broker at 127.0.0.1:*"])
