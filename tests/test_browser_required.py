"""The browser tests cannot vanish silently: without Chromium they are skipped with the reason
on a developer's machine, and fail under CI (`CI=true`), as tests/engines does for each engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ONE_BROWSER_TEST = "tests/e2e/test_plain_http.py"


def run_browser_tests_without_chromium(tmp_path: Path, ci: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OUTPOST_CHROMIUM": str(tmp_path / "no-chromium-here"), "CI": ci}
    return subprocess.run(
        [sys.executable, "-m", "pytest", ONE_BROWSER_TEST, "-p", "no:cacheprovider", "-q", "-rfEs"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("ci", ["true"])
def test_a_missing_chromium_fails_the_browser_tests_under_ci(tmp_path: Path, ci: str) -> None:
    run = run_browser_tests_without_chromium(tmp_path, ci)
    assert run.returncode == 1, run.stdout[-2000:]
    assert "CI=true and the browser tests cannot run: no Chromium at" in run.stdout, run.stdout[-2000:]
    assert " skipped" not in run.stdout.splitlines()[-1], run.stdout[-2000:]


@pytest.mark.parametrize("ci", [""])
def test_a_missing_chromium_skips_the_browser_tests_elsewhere_with_the_reason(tmp_path: Path, ci: str) -> None:
    run = run_browser_tests_without_chromium(tmp_path, ci)
    assert run.returncode == 0, run.stdout[-2000:]
    summary = run.stdout.splitlines()[-1]
    assert " skipped" in summary and "failed" not in summary and "passed" not in summary, summary
    assert "no Chromium at" in run.stdout
