"""Helpers for the sync journeys: drive the app in a real Chromium and look at the server.

The page is driven the way a person would for sign-in, the update dialog, Offline Status and
User Information (by role and accessible name); data changes go through the app's own data
layer (`window.Outpost.ctx.data`, what the forms call). "Offline" is the server process really
stopped AND the phone's network cut (`context.set_offline`); "back online" is the same server
started again on the same port and database and the network restored, which fires the
`online` event the app listens to.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from tests.e2e.conftest import REPO_ROOT, TIMEOUT_MS, ApiClient, LiveServer
from tests.e2e.waits import wait_until
from webapp.crm.tables import changelog
from webapp.demo import DEMO_ORG, DEMO_PASSWORD
from webapp.security.accounts import revoke_user_sessions

CTX = "window.Outpost.ctx"
DRAIN_MS = 20_000  # the longest a queue may take to drain once the server is back
ANSWER_MS = 5_000  # the longest one call into the app (an IndexedDB read, a local write) may take


# --- the app in a page ------------------------------------------------------------------------


def open_app(page: Page) -> None:
    """Open the app and wait until its service worker controls the page (so a reload works offline)."""
    page.goto("/")
    wait_until(page, "navigator.serviceWorker.controller !== null")
    wait_until(page, "Boolean(window.Outpost?.ctx)")


def fill_sign_in(page: Page, username: str, org: str = DEMO_ORG, password: str = DEMO_PASSWORD) -> None:
    """Fill in and send the sign-in form (by label and button name)."""
    page.get_by_label("Organisation").fill(org)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def accept_updates(page: Page) -> None:
    """Answer "Offline Updates Available" with "Update" and wait until the device is offline-ready."""
    dialog = page.get_by_role("dialog", name="Offline Updates Available")
    dialog.get_by_role("button", name="Update").click()
    expect(dialog).to_be_hidden()
    wait_until(page, f"{CTX}.sync?.status.offlineReady === true && {CTX}.sync.status.download === null")


def sign_in(page: Page, username: str, org: str = DEMO_ORG, password: str = DEMO_PASSWORD) -> dict[str, Any]:
    """Open the app, sign in through the form, take the offline updates; returns the identity."""
    if not page.url.startswith("http"):
        open_app(page)
    fill_sign_in(page, username, org, password)
    accept_updates(page)
    wait_synced(page)
    return page.evaluate(f"{CTX}.identity")  # type: ignore[no-any-return]


def status(page: Page) -> dict[str, Any]:
    """The sync status snapshot (`ctx.sync.status`)."""
    return page.evaluate(f"({{...{CTX}.sync.status}})")  # type: ignore[no-any-return]


def call(page: Page, function: str, arg: Any = None, timeout: float = ANSWER_MS) -> Any:
    """Run a JS function (may be async) in the page and return its result, failing after `timeout` ms.

    `page.evaluate` has no time limit of its own; an IndexedDB request that never settles must
    fail the test, not hang the run.
    """
    script = f"""async ([arg, timeout]) => {{
        const fn = {function};
        let timer;
        const late = new Promise((_, reject) => {{
            timer = setTimeout(() => reject(new Error(`no answer within ${{timeout}} ms`)), timeout);
        }});
        try {{
            return await Promise.race([Promise.resolve().then(() => fn(arg)), late]);
        }} finally {{
            clearTimeout(timer);
        }}
    }}"""
    return page.evaluate(script, [arg, timeout])


def pending(page: Page) -> int:
    """How many operations wait in this page's device queue (read from IndexedDB)."""
    return int(call(page, f"() => {CTX}.store.pendingCount()"))


def wait_for(page: Page, predicate: str, timeout: float = TIMEOUT_MS, what: str = "") -> None:
    """Wait, up to `timeout` ms, until `predicate` (a JS function, may be async) is truthy in the page.

    Playwright's `wait_for_function` treats a returned promise as truthy, so an IndexedDB read
    cannot be its condition; this polls the condition inside the page instead, with a deadline
    that holds even when a read never settles.
    """
    script = f"""async (timeout) => {{
        const predicate = {predicate};
        const end = Date.now() + timeout;
        const late = new Promise((resolve) => setTimeout(() => resolve("late"), timeout));
        for (;;) {{
            try {{
                const answer = await Promise.race([Promise.resolve().then(predicate), late]);
                if (answer === "late") return false;
                if (answer) return true;
            }} catch (err) {{
                // not ready yet (no store open, a transaction racing a close): ask again
            }}
            if (Date.now() > end) return false;
            await new Promise((resolve) => setTimeout(resolve, 25));
        }}
    }}"""
    if not page.evaluate(script, timeout):
        raise AssertionError(f"not within {timeout / 1000:.0f} s: {what or predicate}\nstatus: {status(page)}")


SYNCED = f"""async () => {{
    const c = {CTX};
    const s = c.sync.status;
    return s.connection === "online" && s.phase === "idle" && (await c.store.pendingCount()) === 0;
}}"""


def wait_synced(page: Page, timeout: float = DRAIN_MS) -> None:
    """Wait until the device is connected, its queue (in IndexedDB) is empty and the loop is idle."""
    wait_for(page, SYNCED, timeout, "the device is online with an empty queue")


def create(page: Page, entity: str, data: dict[str, Any]) -> str:
    """Create a record through the app's data layer; returns its id."""
    return str(call(page, "([e, d]) => window.Outpost.ctx.data.create(e, d)", [entity, data]))


def update(page: Page, entity: str, record_id: str, data: dict[str, Any]) -> None:
    """Update a record through the app's data layer."""
    call(page, "([e, i, d]) => window.Outpost.ctx.data.update(e, i, d)", [entity, record_id, data])


def remove(page: Page, entity: str, record_id: str) -> None:
    """Delete a record through the app's data layer."""
    call(page, "([e, i]) => window.Outpost.ctx.data.remove(e, i)", [entity, record_id])


def device_record(page: Page, entity: str, record_id: str) -> dict[str, Any] | None:
    """The record as the device shows it (None when the device does not hold it)."""
    return call(page, "([e, i]) => window.Outpost.ctx.store.get(e, i)", [entity, record_id])  # type: ignore[no-any-return]


def retrieve(page: Page, entity: str, record_id: str) -> dict[str, Any]:
    """The record through the app's data layer (`ctx.data.retrieve`, what the screens read)."""
    return call(page, "([e, i]) => window.Outpost.ctx.data.retrieve(e, i)", [entity, record_id])  # type: ignore[no-any-return]


def open_more(page: Page, item: str) -> None:
    """Open the "More" menu and choose an item ("Offline Status", "User Information")."""
    page.get_by_role("button", name="More").click()
    page.get_by_role("menu", name="More").get_by_role("menuitem", name=item).click()


def expect_offline_status_pending(page: Page, count: int) -> None:
    """Open Offline Status and expect "Pending operations" to read `count` on the screen."""
    open_more(page, "Offline Status")
    expect(page.get_by_role("heading", name="Offline Status", level=1)).to_be_visible()
    value = page.locator("dt", has_text="Pending operations").locator("xpath=following-sibling::dd[1]")
    expect(value).to_have_text(str(count))  # retried: a screen already open re-renders a moment later


# --- connectivity -----------------------------------------------------------------------------


def go_offline(server: LiveServer, *contexts: BrowserContext) -> None:
    """Stop the server process and cut the phones' network; wait until every page knows it."""
    for context in contexts:
        context.set_offline(True)
    server.stop()
    for context in contexts:
        for page in context.pages:
            wait_until(page, f"!{CTX}.sync || {CTX}.sync.status.connection !== 'online'")


def come_online(server: LiveServer, *contexts: BrowserContext) -> None:
    """Start the server again (same port, same database) and give the phones their network back."""
    if not server.running:
        server.start()
    for context in contexts:
        context.set_offline(False)


# --- the server side --------------------------------------------------------------------------


def url(path: str) -> str:
    """A Web API path with its query string escaped (spaces, quotes) for urllib."""
    return quote(path, safe="/?&=$(),'@:;*-_.")


def get(api: ApiClient, path: str) -> Any:
    """GET over HTTP and insist on 200; returns the JSON body."""
    resp = api.get(url(path))
    assert resp.status == 200, f"GET {path}: {resp.status} {resp.json}"
    return resp.json


def get_or_none(api: ApiClient, path: str) -> Any:
    """GET a record over HTTP: its JSON, or None on 404."""
    resp = api.get(url(path))
    if resp.status == 404:
        return None
    assert resp.status == 200, f"GET {path}: {resp.status} {resp.json}"
    return resp.json


def user_id(api: ApiClient, username: str) -> str:
    """A user's id, by username."""
    users = get(api, f"/api/data/systemusers?$select=systemuserid&$filter=username eq '{username}'")["value"]
    assert len(users) == 1, users
    return str(users[0]["systemuserid"])


def outpost(server: LiveServer, *args: str) -> str:
    """Run the `outpost` command against the server's database; returns its output."""
    env = {**os.environ, "DATABASE_URL": server.database_url}
    done = subprocess.run(
        [sys.executable, "-m", "webapp.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"outpost {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@contextmanager
def database(server: LiveServer) -> Iterator[Engine]:
    """An engine on the server's own database (read the change log, revoke sessions)."""
    engine = create_engine(server.database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def last_change(server: LiveServer) -> int:
    """The newest change number in the server's change log."""
    with database(server) as engine, engine.connect() as conn:
        return int(conn.execute(select(func.max(changelog.c.changenum))).scalar_one() or 0)


def change_log(server: LiveServer, after: int) -> list[tuple[str, str, str]]:
    """(entity, recordid, operation) of every change after `after`, in change-number order."""
    with database(server) as engine, engine.connect() as conn:
        rows = conn.execute(
            select(changelog.c.entity, changelog.c.recordid, changelog.c.operation)
            .where(changelog.c.changenum > after)
            .order_by(changelog.c.changenum)
        ).all()
    return [(str(r.entity), str(r.recordid), str(r.operation)) for r in rows]


def revoke_sessions(server: LiveServer, user: str) -> None:
    """Revoke every session of a user directly in the server's database (as an expiry would)."""
    with database(server) as engine, Session(engine) as session:
        revoke_user_sessions(session, user)
        session.commit()


# --- IndexedDB, read raw ----------------------------------------------------------------------


def store_names(page: Page) -> list[str]:
    """The names of the Outpost store databases on the device (`indexedDB.databases()`)."""
    names = call(page, "async () => (await indexedDB.databases()).map((d) => d.name)")
    return sorted(n for n in names if n.startswith("outpost:"))


def raw_store(page: Page, name: str) -> dict[str, Any] | None:
    """What a store database holds, read without the app: records, queued ops and meta keys (None if absent)."""
    if name not in store_names(page):
        return None  # opening it would create it
    return call(  # type: ignore[no-any-return]
        page,
        """async (name) => {
            const db = await new Promise((resolve, reject) => {
                const req = indexedDB.open(name);
                req.onsuccess = () => resolve(req.result);
                req.onerror = () => reject(req.error);
            });
            const all = (store) => new Promise((resolve, reject) => {
                const req = db.transaction(store).objectStore(store).getAll();
                req.onsuccess = () => resolve(req.result);
                req.onerror = () => reject(req.error);
            });
            const [records, queue, meta] = [await all("records"), await all("queue"), await all("meta")];
            db.close();
            return {
                records: records.map((r) => ({ entity: r.entity, id: r.id, view: r.view, server: r.server })),
                queue: queue.map((op) => ({ seq: op.seq, kind: op.kind, entity: op.entity, id: op.id })),
                meta: Object.fromEntries(meta.filter((m) => typeof m.value !== "object").map((m) => [m.key, m.value])),
            };
        }""",
        name,
    )
