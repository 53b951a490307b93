"""One security principal per user per process, shared by that user's sockets and requests.

Loading a principal costs a handful of queries (webapp/security/scope.py); a reconnect storm
asks for the same users' principals again and again (`GET /api/auth/me`, hello, every frame),
and each idle socket used to keep a copy of its own. Here a principal is kept per (organisation,
user) with the key it was loaded under: the organisation's metadata revision and the user's
security epoch, which every change to what they may see or do moves in its own transaction
(webapp/crm/epoch.py). A principal is used again only while both still match: one
primary-key read instead of a load. A principal loaded in a transaction that then rolls back is
forgotten (it may reflect a change that never committed and an epoch a later change reuses).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from webapp.crm import epoch
from webapp.crm.registry import OrgModel
from webapp.security.scope import Principal, load_principal

EXTENSION = "outpost_principals"
MAX_USERS = 50_000  # principals kept per process; the least recently used goes first


class Principals:
    """The per-process cache: (org, user) → (revision, epoch) and the principal loaded then."""

    def __init__(self, max_users: int = MAX_USERS) -> None:
        self.max_users = max_users
        self._kept: OrderedDict[tuple[str, str], tuple[tuple[int, int], Principal]] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # how many times a principal was loaded (tests and benchmarks read it)

    def get(self, session: Session, model: OrgModel, user_id: str) -> Principal:
        """The user's principal as `session` sees it: kept, or loaded when the key moved."""
        return self.keyed(session, model, user_id)[0]

    def keyed(self, session: Session, model: OrgModel, user_id: str) -> tuple[Principal, tuple[int, int]]:
        """`get`, with the (revision, epoch) it was loaded under (live fan-out keeps both)."""
        who = (model.org_id, user_id)
        key = (model.revision, epoch.current(session, model.org_id, user_id))
        with self._lock:
            found = self._kept.get(who)
            if found is not None and found[0] == key:
                self._kept.move_to_end(who)
                return found[1], key
        principal = load_principal(session, model, user_id)
        self.loads += 1
        entry = (key, principal)
        with self._lock:
            self._kept[who] = entry
            self._kept.move_to_end(who)
            while len(self._kept) > self.max_users:
                self._kept.popitem(last=False)
        event.listen(session, "after_soft_rollback", lambda *_: self._forget(who, entry), once=True)
        return principal, key

    def _forget(self, who: tuple[str, str], entry: Any) -> None:
        with self._lock:
            if self._kept.get(who) is entry:
                del self._kept[who]

    def __len__(self) -> int:
        return len(self._kept)


def principals(app: Any) -> Principals:
    """The app's principal cache (made on first use)."""
    found = app.extensions.get(EXTENSION)
    if found is None:
        found = app.extensions.setdefault(EXTENSION, Principals())
    return found  # type: ignore[no-any-return]
