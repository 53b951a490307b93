"""`./dev`: `demo` installs only what the app needs, `test` adds the test tools, and pip runs only
when pyproject.toml (or the venv's Python) changed since the last install of that kind.

The venv is a stand-in (`OUTPOST_VENV`): its `python` logs every call and its `outpost` prints
its arguments, so these tests see exactly what `./dev` runs, in a fraction of a second.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

FAKE_PYTHON = """#!/usr/bin/env bash
echo "python $*" >>"$(dirname "$0")/../calls.log"
if [ "${1:-}" = "-c" ]; then echo "3.11.fake"; fi
if [ "${1:-} ${2:-}" = "-m pip" ] && [ -n "${FAKE_PIP_FAILS:-}" ]; then exit 1; fi
exit 0
"""
FAKE_CHECKER = """#!/usr/bin/env bash
echo "TOOL $*" >>"$(dirname "$0")/../calls.log"
if [ -n "${FAKE_TOOL_FAILS:-}" ]; then echo "somewhere.py:1: error: what does not fit"; exit 1; fi
exit 0
"""
FAKE_OUTPOST = """#!/usr/bin/env bash
echo "outpost $*" >>"$(dirname "$0")/../calls.log"
"""


def executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    root = tmp_path / "venv"
    (root / "bin").mkdir(parents=True)
    executable(root / "bin" / "python", FAKE_PYTHON)
    executable(root / "bin" / "outpost", FAKE_OUTPOST)
    executable(root / "bin" / "ruff", FAKE_OUTPOST.replace("outpost", "ruff"))
    executable(root / "bin" / "mypy", FAKE_CHECKER.replace("TOOL", "mypy"))
    executable(root / "bin" / "tsc", FAKE_CHECKER.replace("TOOL", "tsc"))
    return root


def dev(venv: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "dev"), *args],
        env={**os.environ, "OUTPOST_VENV": str(venv), "OUTPOST_TSC": str(venv / "bin" / "tsc"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def calls(venv: Path) -> list[str]:
    log = venv / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def pip_installs(lines: list[str]) -> list[str]:
    return [line for line in lines if " -m pip install " in line and "--upgrade pip" not in line]


def test_dev_demo_installs_the_app_without_the_test_tools_then_skips_pip(venv: Path) -> None:
    first = dev(venv, "demo", "--port", "8123")
    assert first.returncode == 0, first.stderr
    lines = calls(venv)
    assert pip_installs(lines) == ["python -m pip install --quiet --disable-pip-version-check -e ."]
    assert lines[-1] == "outpost demo --port 8123"

    again = dev(venv, "demo", "--host")
    assert again.returncode == 0, again.stderr
    lines = calls(venv)
    assert pip_installs(lines) == [], "nothing changed: pip must not run"
    assert not [line for line in lines if "-m pip" in line]
    assert lines[-1] == "outpost demo --host"


def test_a_changed_python_installs_again(venv: Path) -> None:
    assert dev(venv, "demo").returncode == 0
    calls(venv)
    (venv / ".outpost-app").write_text("a digest of another pyproject.toml\n")
    assert dev(venv, "demo").returncode == 0
    assert pip_installs(calls(venv)) == ["python -m pip install --quiet --disable-pip-version-check -e ."]


def test_a_failed_pip_is_not_remembered_as_installed(venv: Path) -> None:
    failed = dev(venv, "demo", FAKE_PIP_FAILS="1")
    assert failed.returncode != 0
    assert not (venv / ".outpost-app").exists()
    calls(venv)
    assert dev(venv, "demo").returncode == 0
    assert len(pip_installs(calls(venv))) == 1


def test_dev_test_installs_the_test_tools_which_also_serve_the_demo(venv: Path) -> None:
    result = dev(venv, "test", "-k", "nothing")
    assert result.returncode == 0, result.stderr
    lines = calls(venv)
    assert pip_installs(lines) == ["python -m pip install --quiet --disable-pip-version-check -e .[test]"]
    assert "ruff check webapp tests benchmarks" in lines
    assert lines[-3:] == ["mypy ", "tsc -p jsconfig.json", "python -m pytest -m not slow -k nothing"]
    assert dev(venv, "demo").returncode == 0
    assert pip_installs(calls(venv)) == []


def test_dev_with_no_command_prints_the_usage(venv: Path) -> None:
    result = dev(venv)
    assert result.returncode == 2
    assert "./dev demo" in result.stderr and "./dev test" in result.stderr
    assert calls(venv) == []


@pytest.mark.parametrize("tool", ["mypy", "tsc"])
def test_dev_test_stops_before_pytest_when_a_type_check_fails_and_says_where_to_look(venv: Path, tool: str) -> None:
    result = dev(venv, "test", **{f"FAKE_{tool}_FAILS": "1"})
    assert result.returncode == 1
    assert f"error: {tool} found type errors" in result.stderr
    assert ("pyproject.toml" if tool == "mypy" else "jsconfig.json") in result.stderr
    assert not [line for line in calls(venv) if "-m pytest" in line]
