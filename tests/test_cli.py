"""The `outpost` command: administration commands, and `outpost demo` as a real process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from webapp.cli import main


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run `outpost …` in-process against a fresh SQLite database; returns (exit code, output)."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, list(args))
        return result.exit_code, result.output

    return run


def test_administration_commands_build_an_organisation_someone_can_sign_in_to(cli: Any, tmp_path: Path) -> None:
    assert cli("init-db")[0] == 0
    code, out = cli("create-org", "northwind", "--friendly-name", "Northwind Traders")
    assert code == 0, out
    assert out.startswith("Created organisation northwind")
    code, out = cli("create-business-unit", "--org", "northwind", "--name", "Field Sales")
    assert code == 0, out
    assert cli("create-business-unit", "--org", "northwind", "--name", "Field East", "--parent", "Field Sales")[0] == 0
    assert cli("create-position", "--org", "northwind", "--name", "Director")[0] == 0
    assert cli("create-position", "--org", "northwind", "--name", "Rep", "--parent", "Director")[0] == 0
    code, out = cli(
        "create-user", "--org", "northwind", "--username", "dana", "--password", "long-enough-1",
        "--business-unit", "Field Sales", "--firstname", "Dana", "--lastname", "Diaz", "--position", "Director",
    )  # fmt: skip
    assert code == 0, out
    code, out = cli(
        "create-user", "--org", "northwind", "--username", "eli", "--password", "long-enough-2",
        "--business-unit", "Field East", "--lastname", "Ek", "--manager", "dana", "--position", "Rep",
        "--role", "Salesperson",
    )  # fmt: skip
    assert code == 0, out
    code, out = cli(
        "create-team",
        "--org",
        "northwind",
        "--name",
        "Tigers",
        "--business-unit",
        "Field East",
        "--member",
        "eli",
        "--member",
        "dana",
    )
    assert code == 0, out
    assert "2 member(s)" in out

    from webapp import create_app
    from webapp.services import services

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/cli.db"})
    client = app.test_client()
    login = client.post("/api/auth/login", json={"org": "northwind", "username": "eli", "password": "long-enough-2"})
    assert login.status_code == 200
    me = client.get(
        "/api/data/systemusers?$filter=username eq 'eli'&$select=fullname,parentsystemuserid,positionid"
    ).json
    eli = me["value"][0]
    assert eli["_parentsystemuserid_value@OData.Community.Display.V1.FormattedValue"] == "Dana Diaz"
    assert eli["_positionid_value@OData.Community.Display.V1.FormattedValue"] == "Rep"
    bus = client.get("/api/data/businessunits?$select=name,parentbusinessunitid&$orderby=name").json["value"]
    assert [
        (b["name"], b.get("_parentbusinessunitid_value@OData.Community.Display.V1.FormattedValue")) for b in bus
    ] == [
        ("Field East", "Field Sales"),
        ("Field Sales", "Northwind Traders"),
        ("Northwind Traders", None),
    ]
    services(app).db.dispose()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("create-org", "Bad Name"), "organisation name"),
        (("create-business-unit", "--org", "nowhere", "--name", "X"), "no organisation named 'nowhere'"),
        (
            ("create-business-unit", "--org", "acme", "--name", "X", "--parent", "Ghost"),
            "no business unit named 'Ghost'",
        ),
        (
            ("create-user", "--org", "acme", "--username", "u", "--password", "short", "--business-unit", "Acme"),
            "at least 8",
        ),
        (
            ("create-user", "--org", "acme", "--username", "u", "--password", "long-enough", "--business-unit", "Nope"),
            "Nope",
        ),
        (("create-team", "--org", "acme", "--name", "T", "--business-unit", "Acme", "--member", "ghost"), "ghost"),
    ],
)
def test_a_refused_command_says_why_and_exits_2(cli: Any, args: tuple[str, ...], fragment: str) -> None:
    assert cli("create-org", "acme")[0] == 0
    code, out = cli(*args)
    assert code == 2, out
    assert out.startswith("error: ")
    assert fragment in out


def test_an_organisation_name_is_unique(cli: Any) -> None:
    assert cli("create-org", "acme")[0] == 0
    code, out = cli("create-org", "acme")
    assert code == 2
    assert "already exists" in out


def test_a_user_cannot_be_created_twice(cli: Any) -> None:
    cli("create-org", "acme")
    args = ("create-user", "--org", "acme", "--username", "sam", "--password", "long-enough", "--business-unit", "Acme")
    assert cli(*args)[0] == 0
    code, out = cli(*args)
    assert code == 2
    assert "taken" in out


def test_add_entity_refuses_a_file_that_is_not_json(cli: Any, tmp_path: Path) -> None:
    cli("create-org", "acme")
    path = tmp_path / "bad.json"
    path.write_text("{nope")
    code, out = cli("add-entity", "--org", "acme", str(path))
    assert code == 2
    assert "not valid JSON" in out


# --- `outpost demo` as a real process ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DemoServer:
    """`outpost demo` in a subprocess on a free port, against a given database."""

    def __init__(self, db_url: str, port: int, log: Path, extra: tuple[str, ...] = ()) -> None:
        self.port = port
        env = {**os.environ, "DATABASE_URL": db_url}
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "webapp.cli", "demo", "--port", str(port), *extra],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"outpost demo exited with {self.proc.returncode}: {log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"outpost demo did not answer within 60 s: {log.read_text()}")
            time.sleep(0.1)  # polling a condition (the server answering), with a deadline

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()


def http(
    opener: Any, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with opener.open(req, timeout=10) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.fixture
def demo_db(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    yield f"sqlite:///{tmp_path}/demo/outpost.db", tmp_path


def test_outpost_demo_serves_the_demo_organisation_and_a_restart_keeps_data_secret_and_sessions(
    demo_db: tuple[str, Path],
) -> None:
    from webapp.demo import DEMO_PASSWORD

    url, tmp = demo_db
    server = DemoServer(url, free_port(), tmp / "demo.log")
    try:
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        status, me = http(
            opener,
            "POST",
            f"{server.base}/api/auth/login",
            {"org": "contoso", "username": "admin", "password": DEMO_PASSWORD},
        )
        assert status == 200, me
        csrf = me["csrf_token"]
        status, page = http(opener, "GET", f"{server.base}/api/data/accounts?$select=name&$orderby=name")
        assert status == 200
        names = [a["name"] for a in page["value"]]
        assert 45 <= len(names) <= 60
        status, _ = http(
            opener, "POST", f"{server.base}/api/data/accounts", {"name": "Made before restart"}, {"X-CSRF-Token": csrf}
        )
        assert status == 201
        log = (tmp / "demo.log").read_text()
        assert "east1" in log and DEMO_PASSWORD in log
    finally:
        server.stop()
    secret = (tmp / "demo" / "secret_key").read_text()

    again = DemoServer(url, free_port(), tmp / "demo.log")
    try:
        # Same cookie, new process: the device is still signed in; the data is all there.
        status, page = http(opener, "GET", f"{again.base}/api/data/accounts?$select=name&$orderby=name")
        assert status == 200
        assert sorted([*names, "Made before restart"], key=str.lower) == [a["name"] for a in page["value"]]
        assert (tmp / "demo.log").read_text().count("Loading the demo organisation") == 1
    finally:
        again.stop()
    assert (tmp / "demo" / "secret_key").read_text() == secret


def test_outpost_demo_listens_on_loopback_only_unless_host_is_given(demo_db: tuple[str, Path]) -> None:
    from webapp.cli import lan_addresses

    url, tmp = demo_db
    lan = lan_addresses()
    if not lan:
        pytest.skip("this machine has no address besides loopback to open the demo from")
    port = free_port()
    server = DemoServer(url, port, tmp / "demo.log")
    try:
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://{lan[0]}:{port}/healthz", timeout=2)
    finally:
        server.stop()

    port = free_port()
    server = DemoServer(url, port, tmp / "host.log", ("--host",))
    try:
        with urllib.request.urlopen(f"http://{lan[0]}:{port}/healthz", timeout=5) as r:
            assert r.status == 200
        log = (tmp / "host.log").read_text()
        assert f"http://{lan[0]}:{port}/" in log
        assert "HTTPS" in log and "localhost" in log
    finally:
        server.stop()


def test_demo_network_notes_name_the_address_and_say_why_offline_needs_https() -> None:
    from webapp.cli import network_notes

    lines = "\n".join(network_notes("10.1.2.3", 8123))
    assert "http://10.1.2.3:8123/" in lines
    assert "service workers" in lines and "HTTPS" in lines
    assert "adb reverse tcp:8123 tcp:8123" in lines
