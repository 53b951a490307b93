"""`outpost serve` (gunicorn, gevent workers) as a subprocess, for tests and benchmarks.

The database is prepared in this process (schema and demo organisation, fast password
hashes), then the server runs on it; several servers may share one PostgreSQL database.
The test process itself is never monkey-patched: gevent lives only in the server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.live import LiveServer, wait_healthy


def prepare_demo_database(database_url: str, records: int = 0) -> None:
    """Create the schema and load the demo organisation (plus `records` bulk accounts)."""
    from webapp import create_app
    from webapp.demo import DEMO_ORG, build_demo, load_bulk
    from webapp.services import services

    app = create_app({"DATABASE_URL": database_url, "SCHEMA_SETUP": "create_all", "FAST_PASSWORD_HASH": True})
    svc = services(app)
    with svc.db.session(write=True) as dbs:
        build_demo(dbs, svc.registry, svc.hasher)
        if records:
            load_bulk(dbs, svc.registry, DEMO_ORG, records, progress=False, mix=(("account", 1.0),))
        dbs.commit()
    svc.db.dispose()


class ServedServer(LiveServer):
    """`outpost serve --workers N` on a prepared database (SQLite file or PostgreSQL URL)."""

    def __init__(
        self,
        folder: Path,
        database_url: str | None = None,
        workers: int = 1,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(folder, env=env)
        if database_url is not None:
            self.database_url = database_url
            self.env["DATABASE_URL"] = database_url
        self.workers = workers
        self.log_path = folder / f"serve-{self.port}.log"

    def start(self, timeout: float = 60) -> ServedServer:
        """Start gunicorn and wait until it answers /healthz."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "webapp.cli",
                "serve",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                "--graceful-timeout",
                "2",
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_healthy(self.proc, self.base, timeout, self.log_text)
        return self

    def log_text(self) -> str:
        """What the server has written so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log_line(self, match: Callable[[str], bool], timeout: float = 10) -> str:
        """The first log line `match` accepts, waiting for it to be written."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.log_text().splitlines() if match(line)]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no such log line within {timeout} s:\n{self.log_text()[-2000:]}")
            time.sleep(0.05)  # polling a condition (the line written) with a deadline

    def worker_pids(self) -> list[int]:
        """The gunicorn workers' process ids (children of the master, which is `proc`)."""
        assert self.proc is not None
        master = self.proc.pid
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == master:
                pids.append(int(entry))
        return sorted(pids)


def rss_kb(pid: int) -> int:
    """A process's resident memory (VmRSS) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")
