"""How much the security model costs a list: the first 50 accounts of a large organisation.

Issue target: a salesperson lists the first 50 accounts of an organisation holding 200,000
accounts in under 50 ms (median). Measured through the Web API in-process (routing, scope
condition, SQL, serialisation), against the same request by an administrator (no scope
condition) for the ratio.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks import Report, median_ms, p95_ms

RUNS = 30
QUERIES = {
    "first 50 by name": "/api/data/accounts?$select=name,address1_city,telephone1&$orderby=name asc&$top=50",
    "view My Active Accounts": "/api/data/accounts?$select=name,address1_city,telephone1,primarycontactid"
    "&$filter=statecode eq 0&$orderby=name asc&$top=50",
    "quick find 'ca'": "/api/data/accounts?$select=name&$filter=startswith(name,'ca')&$orderby=name asc&$top=50",
}


def run(records: int, report: Report, runs: int = RUNS) -> None:
    """Load `records` accounts into the demo organisation (SQLite) and time the listings."""
    from webapp import create_app
    from webapp.demo import DEMO_ORG, DEMO_PASSWORD, build_demo, load_bulk
    from webapp.services import services

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"DATABASE_URL": f"sqlite:///{Path(tmp) / 'bench.db'}", "FAST_PASSWORD_HASH": True})
        svc = services(app)
        started = time.perf_counter()
        with svc.db.session(write=True) as dbs:
            build_demo(dbs, svc.registry, svc.hasher)
            load_bulk(dbs, svc.registry, DEMO_ORG, records, progress=False, mix=(("account", 1.0),))
            dbs.commit()
        report("load accounts", time.perf_counter() - started, "s", f"{records:,} accounts + demo org")
        clients = {}
        for user in ("east1", "admin"):
            client = app.test_client()
            resp = client.post("/api/auth/login", json={"org": DEMO_ORG, "username": user, "password": DEMO_PASSWORD})
            assert resp.status_code == 200, resp.json
            clients[user] = client
        for label, url in QUERIES.items():
            medians = {}
            for user, client in clients.items():
                samples = []
                for i in range(runs + 3):
                    t0 = time.perf_counter()
                    resp = client.get(url)
                    elapsed = time.perf_counter() - t0
                    assert resp.status_code == 200, resp.json
                    if i >= 3:  # the first calls warm caches and the connection pool
                        samples.append(elapsed)
                medians[user] = median_ms(samples)
                who = "salesperson" if user == "east1" else "administrator"
                report(f"{label}, {who} p50", medians[user], "ms", f"{len(resp.json['value'])} rows")
                report(f"{label}, {who} p95", p95_ms(samples), "ms", "")
            report(f"{label}, scope cost", medians["east1"] / medians["admin"], "x", "salesperson / administrator")
        svc.db.dispose()
