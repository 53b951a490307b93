"""Whether a browser sent this request from another site (login CSRF, issue 17).

Browsers say where a request comes from: `Sec-Fetch-Site` (`same-origin`, `same-site`,
`cross-site`, `none`) and, on every cross-origin POST, `Origin`. A sign-in is refused when
either names anything but this app's own origin — the same origin the sync socket's
handshake demands. A request with neither comes from a program, not from a page in a
victim's browser, and is left to the other checks.
"""

from __future__ import annotations

from flask import request


def own_origin() -> str:
    """This app's origin as the browser sees it (scheme and host, as the socket handshake compares it)."""
    return request.host_url.rstrip("/")


def from_another_site() -> bool:
    """Whether the browser says this request came from a page of another origin."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin")
    return origin is not None and origin != own_origin()
