"""The `outpost` command: run the demo, serve, and administer organisations from the shell.

Every command works on the database named by DATABASE_URL (default: SQLite under
instance/). A refused command prints `error: <why>` and exits with status 2, changing
nothing.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from flask import Flask
from sqlalchemy.orm import Session

from webapp import create_app, metrics
from webapp.crm.errors import CrmError
from webapp.crm.registry import OrgModel
from webapp.services import Services, services

LOOPBACK = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"  # `outpost demo --host` listens on every interface, on purpose


def make_app() -> Flask:
    """The application for a command (schema migrated to the newest version)."""
    return create_app()


@contextmanager
def org_session(org: str | None = None) -> Iterator[tuple[Services, Session, OrgModel | None]]:
    """A write transaction (and the organisation's model), committed if the block succeeds."""
    from webapp.crm.orgs import org_id_by_name

    svc = services(make_app())
    dbs = svc.db.session(write=True)
    try:
        model = svc.registry.model(dbs, org_id_by_name(dbs, org)) if org else None
        yield svc, dbs, model
        dbs.commit()
    except CrmError as exc:
        dbs.rollback()
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(2)
    finally:
        dbs.close()
        svc.db.dispose()


def need(model: OrgModel | None) -> OrgModel:
    """The model opened by org_session (always present when --org was given)."""
    assert model is not None
    return model


def resolve(dbs: Session, model: OrgModel, entity: str, name: str | None) -> str | None:
    """An id from a name (or an id given as is)."""
    from webapp.crm.orgs import find_id

    if not name:
        return None
    if len(name) == 36 and name.count("-") == 4:
        return name.lower()
    return find_id(dbs, model, entity, name)


@click.group()
def main() -> None:
    """Outpost: the offline-first mobile CRM."""


@main.command("init-db")
def init_db() -> None:
    """Create the database, or upgrade it in place to the newest schema."""
    app = make_app()
    click.echo(f"Database ready: {app.config['DATABASE_URL']}")
    services(app).db.dispose()


@main.command("create-org")
@click.argument("name")
@click.option("--friendly-name", default=None, help="Display name (default: NAME capitalised).")
def create_org_cmd(name: str, friendly_name: str | None) -> None:
    """Create an organisation with its root business unit and the shipped security roles."""
    from webapp.security.setup import new_organization

    with org_session() as (svc, dbs, _):
        model = new_organization(dbs, svc.registry, name, friendly_name)
        click.echo(f"Created organisation {name} ({model.org_id})")


@main.command("create-business-unit")
@click.option("--org", required=True)
@click.option("--name", required=True)
@click.option("--parent", default=None, help="Parent business unit (name or id; default: the root).")
def create_business_unit_cmd(org: str, name: str, parent: str | None) -> None:
    """Create a business unit."""
    from webapp.crm.orgs import create_business_unit

    with org_session(org) as (_, dbs, model):
        m = need(model)
        bu = create_business_unit(dbs, m, name, resolve(dbs, m, "businessunit", parent))
        click.echo(f"Created business unit {name} ({bu})")


@main.command("create-position")
@click.option("--org", required=True)
@click.option("--name", required=True)
@click.option("--parent", default=None, help="Parent position (name or id).")
def create_position_cmd(org: str, name: str, parent: str | None) -> None:
    """Create a position (for position hierarchy security)."""
    from webapp.crm.orgs import create_position

    with org_session(org) as (_, dbs, model):
        m = need(model)
        pos = create_position(dbs, m, name, resolve(dbs, m, "position", parent))
        click.echo(f"Created position {name} ({pos})")


@main.command("create-team")
@click.option("--org", required=True)
@click.option("--name", required=True)
@click.option("--business-unit", required=True, help="Business unit (name or id).")
@click.option("--member", "members", multiple=True, help="A member's username (repeatable).")
def create_team_cmd(org: str, name: str, business_unit: str, members: tuple[str, ...]) -> None:
    """Create a team with members."""
    from webapp.crm.orgs import create_team

    with org_session(org) as (_, dbs, model):
        m = need(model)
        bu = resolve(dbs, m, "businessunit", business_unit) or ""
        member_ids = [resolve(dbs, m, "systemuser", u) or "" for u in members]
        team = create_team(dbs, m, name, bu, member_ids)
        click.echo(f"Created team {name} ({team}) with {len(member_ids)} member(s)")


@main.command("create-user")
@click.option("--org", required=True)
@click.option("--username", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="Asked for when omitted.")
@click.option("--business-unit", required=True, help="Business unit (name or id).")
@click.option("--role", "roles", multiple=True, help="A security role's name (repeatable), e.g. Salesperson.")
@click.option("--firstname", default=None)
@click.option("--lastname", default=None, help="Default: the username.")
@click.option("--email", default=None)
@click.option("--manager", default=None, help="The manager's username.")
@click.option("--position", default=None, help="Position (name or id).")
def create_user_cmd(
    org: str,
    username: str,
    password: str,
    business_unit: str,
    roles: tuple[str, ...],
    firstname: str | None,
    lastname: str | None,
    email: str | None,
    manager: str | None,
    position: str | None,
) -> None:
    """Create a user who can sign in, with their security roles."""
    from webapp.security.setup import new_user

    with org_session(org) as (svc, dbs, model):
        m = need(model)
        user_id = new_user(
            dbs,
            m,
            svc.hasher,
            username,
            password,
            lastname or username,
            resolve(dbs, m, "businessunit", business_unit) or "",
            list(roles),
            firstname=firstname,
            manager_id=resolve(dbs, m, "systemuser", manager),
            position_id=resolve(dbs, m, "position", position),
            email=email,
        )
        click.echo(f"Created user {username} ({user_id})")


@main.command("create-role")
@click.option("--org", required=True)
@click.option("--name", required=True)
def create_role_cmd(org: str, name: str) -> None:
    """Create an empty security role (give it privileges with `outpost grant`)."""
    from webapp.security.roles import create_role

    with org_session(org) as (_, dbs, model):
        rid = create_role(dbs, need(model), name)
        click.echo(f"Created role {name} ({rid})")


@main.command("grant")
@click.option("--org", required=True)
@click.option("--role", required=True, help="The role's name.")
@click.option("--entity", required=True, help="An entity's logical name, or * for every entity.")
@click.option(
    "--privilege",
    required=True,
    type=click.Choice(["create", "read", "write", "delete", "append", "appendto", "assign", "share"]),
)
@click.option(
    "--depth", required=True, type=click.Choice(["none", "user", "businessunit", "parentchild", "organization"])
)
def grant_cmd(org: str, role: str, entity: str, privilege: str, depth: str) -> None:
    """Set the depth at which a role holds a privilege on an entity (none removes it)."""
    from webapp.security.roles import depth_value, grant, role_id

    with org_session(org) as (_, dbs, model):
        m = need(model)
        grant(dbs, m, role_id(dbs, m, role), entity, privilege, depth_value(depth))
        click.echo(f"{role}: {privilege} on {entity} at depth {depth}")


@main.command("set-hierarchy")
@click.option("--org", required=True)
@click.option("--model", "kind", required=True, type=click.Choice(["off", "manager", "position"]))
@click.option("--depth", default=3, show_default=True, type=click.IntRange(1, 100))
def set_hierarchy_cmd(org: str, kind: str, depth: int) -> None:
    """Turn hierarchy security off, or on by manager or by position, to a depth."""
    import copy

    from webapp.crm.orgs import save_settings

    with org_session(org) as (_, dbs, model):
        m = need(model)
        settings = copy.deepcopy(m.settings)
        settings["hierarchy"] = {"model": kind, "depth": depth}
        save_settings(dbs, m.org_id, settings)
        click.echo(f"Hierarchy security: {kind}" + (f", depth {depth}" if kind != "off" else ""))


@main.command("set-offline")
@click.option("--org", required=True)
@click.option("--on/--off", "enabled", default=None, help="The organisation-wide mobile offline switch.")
@click.option("--entity", default=None, help="The entity whose profile to change.")
@click.option("--enable/--disable", "entity_enabled", default=None, help="With --entity: offline or not.")
@click.option("--filter", "filter_", default=None, help="With --entity: all|mine|myteams|mybu|modified:DAYS|related.")
@click.option("--interval", default=None, type=click.IntRange(1, 1440), help="Sync interval in minutes.")
@click.option("--conflict-detection", default=None, type=click.Choice(["on", "off"]))
@click.option(
    "--pin",
    default=None,
    type=click.Choice(["on", "off"]),
    help="Require an app PIN on devices: their store is encrypted and unlocked with it (DESIGN.md §6).",
)
def set_offline_cmd(
    org: str,
    enabled: bool | None,
    entity: str | None,
    entity_enabled: bool | None,
    filter_: str | None,
    interval: int | None,
    conflict_detection: str | None,
    pin: str | None,
) -> None:
    """Change the offline profile and the conflict setting (devices then see updates available)."""
    from webapp.sync.profile import set_offline

    if entity is None and (entity_enabled is not None or filter_ is not None):
        click.echo("error: --enable/--disable and --filter need --entity.", err=True)
        sys.exit(2)
    with org_session(org) as (_, dbs, model):
        summary = set_offline(
            dbs,
            need(model),
            enabled=enabled,
            entity=entity,
            entity_enabled=entity_enabled,
            filter_spec=filter_,
            interval=interval,
            conflict_detection=None if conflict_detection is None else conflict_detection == "on",
            pin_required=None if pin is None else pin == "on",
        )
        click.echo(summary)


@main.command("add-entity")
@click.option("--org", required=True)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def add_entity_cmd(org: str, file: Path) -> None:
    """Add a custom entity from a JSON definition (see examples/new_visitreport.json)."""
    from webapp.crm.customizations import add_entity

    try:
        definition = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        click.echo(f"error: {file} is not valid JSON: {exc}", err=True)
        sys.exit(2)
    with org_session(org) as (svc, dbs, model):
        entity = add_entity(dbs, svc.registry, need(model), definition)
        click.echo(f"Added entity {entity.logical_name} (/api/data/{entity.entity_set})")


@main.command("remove-attribute")
@click.option("--org", required=True)
@click.argument("entity")
@click.argument("attribute")
def remove_attribute_cmd(org: str, entity: str, attribute: str) -> None:
    """Remove an attribute of a custom entity (devices' queued values for it are refused by name)."""
    from webapp.crm.remodel import remove_attribute

    with org_session(org) as (svc, dbs, model):
        changed = remove_attribute(dbs, svc.registry, need(model), entity, attribute)
        click.echo(f"Removed {attribute} from {changed.logical_name}")


@main.command("remove-entity")
@click.option("--org", required=True)
@click.argument("entity")
def remove_entity_cmd(org: str, entity: str) -> None:
    """Remove a custom entity with its records (devices' queued changes to it are refused by name)."""
    from webapp.crm.remodel import remove_entity

    with org_session(org) as (svc, dbs, model):
        remove_entity(dbs, svc.registry, need(model), entity)
        click.echo(f"Removed entity {entity}")


@main.command("set-transitions")
@click.option("--org", required=True)
@click.argument("entity")
@click.argument("moves", nargs=-1, required=True)
def set_transitions_cmd(org: str, entity: str, moves: tuple[str, ...]) -> None:
    """The statuses a plain update may move ENTITY's records to, as FROM:TO,TO (FROM: for none), e.g. 0:1 1:."""
    from webapp.crm.remodel import set_transitions

    parsed: dict[int, list[int]] = {}
    for move in moves:
        start, sep, targets = move.partition(":")
        values = [t.strip() for t in targets.split(",") if t.strip()]
        if not sep or not start.strip().isdigit() or not all(v.isdigit() for v in values):
            click.echo(
                f"error: write each move as FROM:TO,TO with status values (FROM: for none), not '{move}'.", err=True
            )
            sys.exit(2)
        parsed[int(start)] = [int(v) for v in values]
    with org_session(org) as (svc, dbs, model):
        changed = set_transitions(dbs, svc.registry, need(model), entity, parsed)
        state = changed.attribute("statecode")
        assert state is not None
        click.echo(
            "; ".join(f"{o.label} -> {', '.join(str(n) for n in o.next_states) or 'none'}" for o in state.options)
        )


@main.command("load-demo")
@click.option("--org", default="contoso", show_default=True)
@click.option("--records", type=click.IntRange(1, 10_000_000), required=True)
@click.option("--progress/--no-progress", default=True)
def load_demo_cmd(org: str, records: int, progress: bool) -> None:
    """Bulk-load N more records into an organisation (for benchmarks)."""
    from webapp.demo import load_bulk

    started = time.perf_counter()
    with org_session(org) as (svc, dbs, _):
        counts = load_bulk(dbs, svc.registry, org, records, progress=progress)
    elapsed = time.perf_counter() - started
    summary = ", ".join(f"{n} {e}" for e, n in counts.items())
    click.echo(f"Loaded {sum(counts.values())} records in {elapsed:.1f} s ({summary})")


@main.command("bench")
@click.option("--records", default=50_000, show_default=True, type=click.IntRange(10, 10_000_000))
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option(
    "--only",
    multiple=True,
    help="Run only these benchmarks (repeatable): security, connections, storm, replay, push, device, scope, signin.",
)
@click.option(
    "--connections",
    default=None,
    type=click.IntRange(1, 100_000),
    help="Idle sockets for the connections benchmark, devices for storm (default: records / 100, 20 to 2,000).",
)
@click.option(
    "--seconds",
    default=None,
    type=click.FloatRange(0.5, 3600),
    help="Length of each phase of the signin benchmark (default 60).",
)
def bench_cmd(
    records: int, json_path: Path | None, only: tuple[str, ...], connections: int | None, seconds: float | None
) -> None:
    """Run the benchmark suite and print its figures (and write them as JSON)."""
    try:  # an installed package of its own (pyproject.toml), never the checkout put on sys.path
        from benchmarks import SUITES, run_suite
    except ImportError as exc:
        click.echo(f"error: the benchmark suite is not installed ({exc}); pip install -e '.[test]'.", err=True)
        sys.exit(2)
    unknown = sorted(set(only) - set(SUITES))
    if unknown:
        click.echo(f"error: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}.", err=True)
        sys.exit(2)
    run_suite(records, json_path, list(only) or None, connections=connections, seconds=seconds)


def ensure_demo(app: Flask, echo: Callable[[str], None]) -> list[dict[str, Any]]:
    """Load the demo organisation unless it is there already; return its sign-ins."""
    from sqlalchemy import select

    from webapp.crm.tables import organization
    from webapp.demo import DEMO_ORG, build_demo, demo_signins

    svc = services(app)
    with svc.db.session(write=True) as dbs:
        exists = dbs.execute(select(organization.c.organizationid).where(organization.c.name == DEMO_ORG)).first()
        if exists is None:
            echo("Loading the demo organisation 'contoso'…")
            signins = build_demo(dbs, svc.registry, svc.hasher)
            dbs.commit()
            return signins
    return demo_signins()


@main.command("demo")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--host",
    is_flag=False,
    flag_value=ALL_INTERFACES,
    default=LOOPBACK,
    show_default=True,
    metavar="[ADDRESS]",
    help=f"Listen on this address; --host alone listens on every interface ({ALL_INTERFACES}), "
    "so a phone on the same network can open the app.",
)
def demo_cmd(port: int, host: str) -> None:
    """Create the SQLite database and demo organisation if absent, then serve (127.0.0.1 unless --host)."""
    configure_logging()
    app = make_app()
    signins = ensure_demo(app, click.echo)
    click.echo(f"Database: {app.config['DATABASE_URL']}")
    click.echo("Sign in to organisation 'contoso' as:")
    for s in signins:
        click.echo(f"  {s['username']:<10} {s['password']:<16} {s['role']} ({s['business_unit']})")
    click.echo(f"Outpost is running at http://127.0.0.1:{port}/  (Ctrl+C to stop)", err=False)
    if host != LOOPBACK:
        for line in network_notes(host, port):
            click.echo(line)
    sys.stdout.flush()
    app.run(host=host, port=port, threaded=True, use_reloader=False)


def lan_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback, as a phone on the same network reaches them."""
    import socket

    found: list[str] = []
    try:
        # The address the system would send from to reach another network: no packet is sent.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1, never routed
            found.append(s.getsockname()[0])
    except OSError:
        pass
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.append(str(info[4][0]))
    except OSError:
        pass
    return [a for a in dict.fromkeys(found) if not a.startswith("127.")]


def network_notes(host: str, port: int) -> list[str]:
    """What `outpost demo --host` prints: where a phone opens the app, and why offline needs HTTPS."""
    addresses = lan_addresses() if host == ALL_INTERFACES else [host]
    lines = [f"Listening on {host}: from a phone on the same network open"]
    lines += [f"  http://{a}:{port}/" for a in addresses] or [f"  http://<this machine's address>:{port}/"]
    lines += [
        "Over plain HTTP at such an address the app works online only: browsers give service workers",
        "(the offline app shell), Background Sync and WebCrypto only to HTTPS pages and to localhost.",
        "For offline use on a phone: forward the port over USB and open http://localhost:"
        f"{port}/ there (Android: `adb reverse tcp:{port} tcp:{port}`), or serve through an HTTPS proxy",
        "whose certificate the phone trusts. See the README, 'Open it on a phone'.",
    ]
    return lines


def configure_logging() -> None:
    """Send the app's own log lines (one JSON line per sync session, …) to stderr."""
    import logging

    logger = logging.getLogger("outpost")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def served_app() -> Flask:
    """The application as `outpost serve`'s workers build it (after gevent has patched them)."""
    configure_logging()
    return create_app()


def gunicorn_argv(host: str, port: int, workers: int, connections: int, graceful_timeout: int) -> list[str]:
    """The gunicorn command line `outpost serve` runs."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--worker-class",
        "gevent",
        "--workers",
        str(workers),
        "--worker-connections",
        str(connections),
        "--bind",
        f"{host}:{port}",
        "--graceful-timeout",
        str(graceful_timeout),
        "--timeout",
        "60",
        "--access-logfile",
        "-",
        "--no-control-socket",  # gunicorn's default path is one per user: two servers would clash
        "--config",
        "python:webapp.serving",  # hooks: sockets close with 1012 on SIGTERM
        "webapp.cli:served_app()",
    ]


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Processes (PostgreSQL).")
@click.option(
    "--worker-connections",
    default=10_000,
    show_default=True,
    type=click.IntRange(10, 1_000_000),
    help="Open sockets and requests one process accepts at once.",
)
@click.option("--graceful-timeout", default=10, show_default=True, type=click.IntRange(0, 3600))
def serve_cmd(host: str, port: int, workers: int, worker_connections: int, graceful_timeout: int) -> None:
    """Production serving: gunicorn with gevent workers, thousands of open sockets per process.

    On SQLite (the default) use one worker: the change feed is in-process, and every SQLite
    call blocks that worker's event loop while it runs. On PostgreSQL, run as many workers
    (and hosts) as needed: the change feed crosses processes through LISTEN/NOTIFY.
    """
    import os
    import resource

    app = make_app()  # create or migrate the schema once, before any worker starts
    is_sqlite = services(app).db.is_sqlite
    services(app).db.dispose()
    if workers > 1 and is_sqlite:
        click.echo(
            "error: --workers > 1 needs PostgreSQL (set DATABASE_URL): on SQLite the change feed"
            " stays inside one process, so devices on another worker would miss live changes.",
            err=True,
        )
        sys.exit(2)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # every socket is a file descriptor: allow as many as the system lets us
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    click.echo(f"Outpost serving {app.config['DATABASE_URL'].split('@')[-1]} on http://{host}:{port}/", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    metrics.prepare_multiprocess_dir()  # the workers' shared metrics folder, before any worker starts
    argv = gunicorn_argv(host, port, workers, worker_connections, graceful_timeout)
    os.execv(argv[0], argv)  # a fresh process: gevent patches each worker before the app is imported


if __name__ == "__main__":
    main()
