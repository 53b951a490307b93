"""Encryption at rest with the app PIN (DESIGN.md §6), in a real Chromium.

With the organisation's PIN on, the user sets a PIN after signing in; the device's records,
queue, meta and sync errors are sealed with AES-GCM under a random data key that the device
keeps only wrapped by the PIN. These tests read IndexedDB raw, the way someone holding the
phone's storage would, and find no field value in it; they check the Unlock screen, the queue
staying put while locked, Forgot PIN with the password, the lock after ten wrong PINs, and
that Reconfigure and sign-out with clearing leave nothing a key could open.
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy.orm import Session

from tests.e2e.conftest import LiveServer
from tests.e2e.sync_helpers import (
    CTX,
    accept_updates,
    call,
    come_online,
    create,
    database,
    fill_sign_in,
    get_or_none,
    go_offline,
    open_app,
    open_more,
    outpost,
    pending,
    retrieve,
    sign_in,
    store_names,
    wait_synced,
)
from tests.e2e.waits import wait_until
from webapp.demo import DEMO_PASSWORD
from webapp.sync.devices import revoke

PIN = "481516"
NEW_PIN = "234223"
NEW_ACCOUNT = {
    "name": "Zebulon Quietly Encrypted Ltd",
    "emailaddress1": "secret.buyer@zebulon-encrypted.example",
    "telephone1": "+44 1632 960123",
    "address1_city": "Lyme Regis",
}

# Every database, every object store: key path, indexes (with every index key), primary keys
# and values. Binary values (the ciphertexts) become Latin-1 text, so plaintext inside them
# would show; everything is returned as text to search.
DUMP = """async () => {
    const bytes = (v) => new TextDecoder("latin1").decode(
        v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
    const text = (v) => {
        if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) return bytes(v);
        if (Array.isArray(v)) return "[" + v.map(text).join(",") + "]";
        if (v && typeof v === "object")
            return "{" + Object.entries(v).map(([k, x]) => k + ":" + text(x)).join(",") + "}";
        return String(v);
    };
    const req = (r) => new Promise((resolve, reject) => {
        r.onsuccess = () => resolve(r.result);
        r.onerror = () => reject(r.error);
    });
    const indexKeys = (index) => new Promise((resolve, reject) => {
        const keys = [];
        const r = index.openKeyCursor();
        r.onsuccess = () => { const c = r.result; if (!c) resolve(keys); else { keys.push(c.key); c.continue(); } };
        r.onerror = () => reject(r.error);
    });
    const out = [];
    for (const { name } of await indexedDB.databases()) {
        const db = await req(indexedDB.open(name));
        for (const storeName of db.objectStoreNames) {
            const store = db.transaction(storeName).objectStore(storeName);
            const indexes = [];
            for (const indexName of store.indexNames) {
                const index = store.index(indexName);
                indexes.push({ name: indexName, keyPath: index.keyPath, keys: (await indexKeys(index)).map(text) });
            }
            const s2 = db.transaction(storeName).objectStore(storeName);
            const [keys, values] = [await req(s2.getAllKeys()), await req(s2.getAll())];
            out.push({
                db: name, store: storeName, keyPath: store.keyPath, indexes,
                keys: keys.map(text), values: values.map(text),
                fields: [...new Set(values.flatMap((v) => Object.keys(v)))].sort(),
            });
        }
        db.close();
    }
    return out;
}"""


def dump(page: Page) -> list[dict[str, Any]]:
    """Every object store of every database on the device, as text (see DUMP)."""
    return call(page, DUMP, timeout=30_000)  # type: ignore[no-any-return]


def plaintext_found(stores: list[dict[str, Any]], secrets: set[str]) -> list[tuple[str, str]]:
    """(store, secret) for each secret that appears anywhere in the dump, case-insensitively."""
    found = []
    for s in stores:
        blob = "\n".join([*s["keys"], *s["values"], *(k for i in s["indexes"] for k in i["keys"])]).lower()
        found += [(f"{s['db']}/{s['store']}", secret) for secret in secrets if secret.lower() in blob]
    return found


def turn_pin_on(server: LiveServer) -> None:
    """The administrator requires the app PIN (the organisation setting)."""
    assert "app PIN required" in outpost(server, "set-offline", "--org", "contoso", "--pin", "on")


def set_pin(page: Page, pin: str = PIN) -> None:
    """Answer the Set a PIN screen."""
    expect(page.get_by_role("heading", name="Set a PIN")).to_be_visible()
    page.get_by_label("New PIN").fill(pin)
    page.get_by_label("Confirm PIN").fill(pin)
    page.get_by_role("button", name="Set PIN").click()


def sign_in_with_pin(page: Page, username: str) -> dict[str, Any]:
    """Open the app, sign in, set the PIN, take the offline updates; returns the identity."""
    open_app(page)
    fill_sign_in(page, username)
    set_pin(page)
    accept_updates(page)
    wait_synced(page)
    return call(page, f"() => {CTX}.identity")  # type: ignore[no-any-return]


def unlock(page: Page, pin: str) -> None:
    """Type a PIN on the Unlock screen and press Unlock."""
    page.get_by_label("PIN", exact=True).fill(pin)
    page.get_by_role("button", name="Unlock").click()


def held_values(page: Page) -> set[str]:
    """Field values of records the device holds (names, e-mails, phones): what must not leak."""
    values = call(
        page,
        """async () => {
            const out = [];
            for (const entity of ["account", "contact"]) {
                for (const r of await window.Outpost.ctx.store.all(entity))
                    for (const f of ["name", "fullname", "emailaddress1", "telephone1"])
                        if (typeof r[f] === "string" && r[f].length >= 6) out.push(r[f]);
            }
            return out;
        }""",
    )
    return set(values)


def test_with_the_pin_on_indexeddb_holds_no_field_value_and_the_queue_waits_for_the_unlock(
    live_server: LiveServer, phone_context: BrowserContext, phone_page: Page
) -> None:
    """Set the PIN, take the offline data, create a record offline: the raw store shows none of it;
    a reload asks for the PIN, refuses a wrong one, and the queue replays after the right one."""
    turn_pin_on(live_server)
    page = phone_page
    sign_in_with_pin(page, "east1")
    secrets = held_values(page)
    assert len(secrets) > 20, secrets  # the device really holds the user's accounts and contacts

    go_offline(live_server, phone_context)
    new_id = create(page, "account", NEW_ACCOUNT)
    assert pending(page) == 1
    secrets |= set(NEW_ACCOUNT.values())

    stores = dump(page)
    assert plaintext_found(stores, secrets) == []
    by_store = {s["store"]: s for s in stores if s["db"].startswith("outpost:contoso:")}
    # What stays readable is what IndexedDB must index: keys, entity, seq, "entity|id", counts.
    assert by_store["records"]["fields"] == ["entity", "id", "pending", "sealed", "tokens", "version"]
    assert by_store["queue"]["fields"] == ["sealed", "seq", "touches"]
    assert {i["name"]: i["keys"] for i in by_store["records"]["indexes"]}["tokens"] == []  # no search tokens
    assert [s["keyPath"] for s in (by_store["records"], by_store["queue"])] == [["entity", "id"], "seq"]
    meta_keys = by_store["meta"]["keys"]
    assert {"vault", "device_id", "next_seq", "customizations", "csrf"} <= set(meta_keys)
    assert f"account|{new_id}" in by_store["queue"]["indexes"][0]["keys"]

    # A reload (the server still stopped) asks for the PIN before anything else; nothing syncs.
    page.reload()
    expect(page.get_by_role("heading", name="Unlock")).to_be_visible()
    assert call(page, f"() => {CTX}.sync === null && {CTX}.store.locked")
    come_online(live_server, phone_context)
    unlock(page, "000000")
    expect(page.get_by_role("alert")).to_have_text("That PIN is not right. 9 attempts left.")
    assert call(page, f"() => {CTX}.sync === null && {CTX}.store.locked")
    assert pending(page) == 1  # still queued: a locked app reads no queue and sends nothing
    assert get_or_none(live_server.client("east1"), f"/api/data/accounts({new_id})") is None

    unlock(page, PIN)
    expect(page.get_by_role("heading", name="Unlock")).to_be_hidden()
    wait_synced(page)
    server_copy = get_or_none(live_server.client("east1"), f"/api/data/accounts({new_id})")
    assert server_copy is not None and server_copy["emailaddress1"] == NEW_ACCOUNT["emailaddress1"]
    assert retrieve(page, "account", new_id)["name"] == NEW_ACCOUNT["name"]
    hits = call(page, f"() => {CTX}.store.search(['account'], 'zebulon q')")
    assert [h["record"]["accountid"] for h in hits] == [new_id]  # quick find works on the encrypted store
    assert plaintext_found(dump(page), secrets) == []


def test_a_forgotten_pin_is_reset_online_with_the_password_even_after_ten_wrong_pins(
    live_server: LiveServer, phone_context: BrowserContext, phone_page: Page
) -> None:
    """Ten wrong PINs delete the wrapped key; Forgot PIN (password, new PIN) opens the data again."""
    turn_pin_on(live_server)
    page = phone_page
    sign_in_with_pin(page, "east2")
    some_id = call(page, f"async () => (await {CTX}.store.all('account'))[0].accountid")
    page.reload()
    expect(page.get_by_role("heading", name="Unlock")).to_be_visible()
    for attempt in range(1, 10):
        unlock(page, f"99999{attempt}")
        left = 10 - attempt
        expect(page.get_by_role("alert")).to_have_text(
            f"That PIN is not right. {left} attempt{'' if left == 1 else 's'} left."
        )
    unlock(page, "999990")
    expect(page.get_by_role("alert")).to_contain_text("Too many wrong PINs")
    expect(page.get_by_label("PIN", exact=True)).to_have_count(0)
    assert call(page, f"async () => (await {CTX}.store.wrapping()).wrapped") is None  # the key on the device is gone

    page.get_by_role("button", name="Forgot PIN?").click()
    expect(page.get_by_role("heading", name="Reset your PIN")).to_be_visible()
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_label("New PIN").fill(NEW_PIN)
    page.get_by_label("Confirm PIN").fill(NEW_PIN)
    page.get_by_role("button", name="Reset PIN").click()
    expect(page.get_by_role("alert")).to_have_text("The password is wrong.")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Reset PIN").click()
    expect(page.get_by_role("heading", name="Reset your PIN")).to_be_hidden()
    wait_synced(page)
    assert retrieve(page, "account", some_id)["accountid"] == some_id

    # The next start takes the new PIN, not the old one.
    page.reload()
    unlock(page, PIN)
    expect(page.get_by_role("alert")).to_contain_text("That PIN is not right.")
    unlock(page, NEW_PIN)
    wait_synced(page)


def test_reconfigure_and_sign_out_with_clearing_leave_no_key_that_opens_the_old_data(
    live_server: LiveServer, phone_context: BrowserContext, phone_page: Page
) -> None:
    """The wrapped key is deleted with the store, and so is the server's copy: old ciphertext stays shut."""
    turn_pin_on(live_server)
    page = phone_page
    me = sign_in_with_pin(page, "west1")
    db_name = f"outpost:contoso:{me['user']['id']}"
    old_device = call(page, f"() => {CTX}.store.deviceId()")
    # A sealed record as it was on disk, kept aside the way a copy of the phone's storage would be.
    before = call(
        page,
        """async (name) => new Promise((resolve, reject) => {
            const r = indexedDB.open(name);
            r.onsuccess = () => {
                const g = r.result.transaction("records").objectStore("records").getAll(null, 1);
                g.onsuccess = () => { const row = g.result[0]; r.result.close();
                    resolve({ entity: row.entity, id: row.id, sealed: Array.from(row.sealed) }); };
                g.onerror = () => reject(g.error);
            };
            r.onerror = () => reject(r.error);
        })""",
        db_name,
    )
    assert call(page, f"() => {CTX}.store.vault !== null")
    api = live_server.client("west1")
    recover = f"/api/device-keys/{old_device}/recover"
    assert api.post(recover, {"password": DEMO_PASSWORD}).status == 200

    open_more(page, "User Information")
    page.get_by_role("button", name="Reconfigure").click()
    page.get_by_role("dialog", name="Reconfigure").get_by_role("button", name="Reconfigure").click()
    expect(page.get_by_role("heading", name="Set a PIN")).to_be_visible()  # a new store, a new key
    assert api.post(recover, {"password": DEMO_PASSWORD}).status == 404  # the server's copy is gone
    stores = {s["store"]: s for s in dump(page) if s["db"] == db_name}
    assert "vault" not in stores["meta"]["keys"] and stores["records"]["keys"] == []
    set_pin(page, NEW_PIN)
    page.get_by_role("dialog", name="Offline Updates Available").get_by_role("button", name="Skip for now").click()
    wait_until(page, f"Boolean({CTX}.sync)")
    new_device = call(page, f"() => {CTX}.store.deviceId()")
    assert new_device != old_device
    opened = call(
        page,
        f"""async (row) => {CTX}.store.vault.open(new Uint8Array(row.sealed), `records|${{row.entity}}|${{row.id}}`)
            .then(() => "opened", () => "refused")""",
        before,
    )
    assert opened == "refused"

    open_more(page, "User Information")
    page.get_by_role("button", name="Sign out and clear this device").click()
    page.get_by_role("dialog", name="Sign out and clear this device").get_by_role(
        "button", name="Sign out and clear this device"
    ).click()
    expect(page.get_by_label("Organisation")).to_be_visible()
    assert store_names(page) == []
    assert api.post(f"/api/device-keys/{new_device}/recover", {"password": DEMO_PASSWORD}).status == 404


def test_a_device_that_already_holds_data_when_the_pin_is_turned_on_seals_it_all(
    live_server: LiveServer, phone_context: BrowserContext, phone_page: Page
) -> None:
    """PIN off: records and a queued change in the clear. PIN on: at the next start the app asks for a
    PIN, seals what the device holds (the queue too), and the change still reaches the server."""
    page = phone_page
    sign_in(page, "east1")
    secrets = held_values(page)
    go_offline(live_server, phone_context)
    new_id = create(page, "account", NEW_ACCOUNT)
    secrets |= set(NEW_ACCOUNT.values())
    assert plaintext_found(dump(page), {NEW_ACCOUNT["name"]})  # with the PIN off, the store is in the clear

    live_server.start()
    turn_pin_on(live_server)
    page.reload()  # the server is back, the phone still offline: the app starts from the device
    come_online(live_server, phone_context)
    page.reload()  # online: the organisation's setting arrives with the session check
    set_pin(page)
    wait_synced(page)
    assert get_or_none(live_server.client("east1"), f"/api/data/accounts({new_id})") is not None
    assert plaintext_found(dump(page), secrets) == []
    page.reload()
    expect(page.get_by_role("heading", name="Unlock")).to_be_visible()


def test_a_revoked_device_loses_the_servers_copy_at_once_and_wipes_itself_once_unlocked(
    live_server: LiveServer, phone_context: BrowserContext, phone_page: Page
) -> None:
    """Revoking deletes the server's copy of the key; locked, the device cannot hear the wipe (nothing
    syncs), so its data stays sealed; once unlocked and connected it wipes itself, wrapped key first."""
    turn_pin_on(live_server)
    page = phone_page
    sign_in_with_pin(page, "west2")
    device_id = call(page, f"() => {CTX}.store.deviceId()")
    with database(live_server) as engine, Session(engine) as session:
        revoke(session, device_id)
        session.commit()
    api = live_server.client("west2")
    assert api.post(f"/api/device-keys/{device_id}/recover", {"password": DEMO_PASSWORD}).status == 403

    page.reload()
    unlock(page, PIN)
    expect(page.get_by_label("Organisation")).to_be_visible()  # wiped and signed out: the sign-in screen
    wait_until(page, "(async () => (await indexedDB.databases()).every((d) => !d.name.startsWith('outpost:')))()")
    assert store_names(page) == []
