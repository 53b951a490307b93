"""Security headers on every response: what the browser may load, frame, sniff and send on.

The app shell, the admin pages and every asset come from this origin and no markup carries
inline script or inline style, so the Content-Security-Policy can be strict: scripts, styles,
workers and connections from `'self'` only (plus this host's WebSocket URL, spelled out for
engines that do not count ws:/wss: as `'self'`), no plugins, no `<base>` tricks, and no page
of another site may frame ours (clickjacking). HSTS is sent only over HTTPS, where it means
something; the session cookie's flags are set where it is issued (webapp/api/auth.py).
"""

from __future__ import annotations

from flask import Flask, Response, request

HSTS = "max-age=31536000; includeSubDomains"
REFERRER_POLICY = "same-origin"  # our own pages get the path; other sites get nothing
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"


def content_security_policy(host: str, secure: bool) -> str:
    """The policy for a response served to `host` (the WebSocket URL names the host)."""
    socket = f"{'wss' if secure else 'ws'}://{host}"
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self' data:",
        "font-src": "'self'",
        "connect-src": f"'self' {socket}",
        "worker-src": "'self'",
        "manifest-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def register_headers(app: Flask) -> None:
    """Add the security headers to every response the app sends."""

    @app.after_request
    def security_headers(resp: Response) -> Response:
        secure = request.is_secure
        headers = resp.headers
        headers.setdefault("Content-Security-Policy", content_security_policy(request.host, secure))
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")  # frame-ancestors for engines that predate it
        headers.setdefault("Referrer-Policy", REFERRER_POLICY)
        headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        if secure:
            headers.setdefault("Strict-Transport-Security", HSTS)
        return resp
