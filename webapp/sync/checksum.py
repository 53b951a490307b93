"""The scope checksum: how server and device summarise a set of record ids (docs/protocol.md §5).

Both sides compute it — this module on the server, `webapp/static/js/scope.js` on the device
— and `tests/cases/scope_checksum.json` holds the vectors both are tested against. The rule:

- a set of ids is split into buckets by the first `depth` characters of each id (depth 0:
  one bucket, named "");
- a bucket's summary is `[count, digest]`, where `digest` is the first 16 hexadecimal digits
  of the SHA-256 of the bucket's ids sorted by code point and joined with "\\n" (UTF-8);
- empty buckets are left out;
- the server picks `depth` from how many ids it has: 0 up to 1,000 ids, 1 up to 16,000,
  else 2 (at 200,000 ids: 256 buckets of about 800).

Record ids are lower-case UUIDs (PROTOCOL.md §1), so a bucket's prefix is hex digits and code
point order is plain ASCII order.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable

DIGEST_LENGTH = 16
Summary = dict[str, list[int | str]]  # bucket prefix -> [count, digest]


def digest(ids: Iterable[str]) -> str:
    """The digest of a set of ids (order does not matter)."""
    return hashlib.sha256("\n".join(sorted(ids)).encode("utf-8")).hexdigest()[:DIGEST_LENGTH]


def depth_for(count: int) -> int:
    """The bucket depth for a set of `count` ids."""
    if count <= 1_000:
        return 0
    if count <= 16_000:
        return 1
    return 2


def buckets(ids: Iterable[str], depth: int) -> dict[str, list[str]]:
    """The ids grouped by their first `depth` characters."""
    out: dict[str, list[str]] = defaultdict(list)
    for record_id in ids:
        out[record_id[:depth]].append(record_id)
    return dict(out)


def summarise(ids: Iterable[str], depth: int) -> Summary:
    """`{prefix: [count, digest]}` for every non-empty bucket."""
    return {prefix: [len(group), digest(group)] for prefix, group in buckets(ids, depth).items()}
