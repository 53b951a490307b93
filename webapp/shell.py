"""The app shell: the page a phone opens, its service worker, its manifest and its assets.

At start-up the server hashes every file under the static folder (no build step). The hashes
give each asset a content-addressed URL, `asset_url("css/app.css")` →
`/static/css/app.css?v=<hash>`, that browsers may cache for a year; and they are the service
worker's precache list, whose version is one hash over all of them. Any changed file — or a
changed shell page or worker template — changes `/sw.js`, so the browser installs a new
worker, which waits until the user accepts the update (webapp/static/js/pwa.js).

Routes: `/` (the shell), `/sw.js` (the worker, scope `/`), `/manifest.webmanifest`,
`/healthz`. `OUTPOST_STATIC_FOLDER` serves the static files from another folder (the browser
tests publish a new version this way, from a changed copy).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, render_template, request, send_from_directory

HASH_LENGTH = 16  # hex digits of SHA-256 kept: 64 bits, plenty to tell versions apart
CACHE_PREFIX = "outpost-shell-"  # the worker owns every cache whose name starts with this
SHELL_URL = "/"
MANIFEST = "manifest.webmanifest"  # served from the root, where its scope and start_url live
IMMUTABLE = "public, max-age=31536000, immutable"
# Content types set explicitly: the platform's mimetypes table varies between machines and
# a worker or module script served with the wrong type is refused by the browser.
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".webmanifest": "application/manifest+json",
    ".json": "application/json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}
SKIPPED_SUFFIXES = {".py", ".pyc"}  # source kept beside the assets (the icon generator), not assets


def content_hash(data: bytes) -> str:
    """The short content hash used in asset URLs (the worker computes the same one)."""
    return hashlib.sha256(data).hexdigest()[:HASH_LENGTH]


def is_asset(relative: Path) -> bool:
    """Whether a file under the static folder is part of the app (not hidden, not source)."""
    if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
        return False
    return relative.suffix not in SKIPPED_SUFFIXES


def hash_static(folder: Path) -> dict[str, str]:
    """`{relative/path: hash}` for every asset under `folder`, in path order."""
    hashes = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        if is_asset(relative):
            hashes[relative.as_posix()] = content_hash(path.read_bytes())
    return hashes


@dataclass(frozen=True)
class ShellAssets:
    """The start-up hash table: assets, the rendered shell page, and the version over both."""

    static_url_path: str
    hashes: dict[str, str]
    shell_hash: str = ""
    version: str = ""

    def public_url(self, path: str) -> str:
        """Where an asset is served (the manifest from the root, the rest under /static)."""
        return f"/{MANIFEST}" if path == MANIFEST else f"{self.static_url_path}/{path}"

    def asset_url(self, path: str) -> str:
        """The asset's URL with `?v=<hash>`; a file that does not exist gets its plain URL."""
        url = f"{self.static_url_path}/{path}"
        digest = self.hashes.get(path)
        return f"{url}?v={digest}" if digest else url

    def precache(self) -> list[dict[str, str]]:
        """The worker's precache list: the shell first, then every asset."""
        return [{"url": SHELL_URL, "hash": self.shell_hash}] + [
            {"url": self.public_url(path), "hash": digest} for path, digest in self.hashes.items()
        ]


def compute_version(precache: list[dict[str, str]], worker_source: str) -> str:
    """One hash over every entry's URL and hash, and over the worker's own template."""
    lines = [f"{entry['url']} {entry['hash']}" for entry in precache]
    lines.append(f"sw.js {content_hash(worker_source.encode())}")
    return content_hash("\n".join(lines).encode())


def build_assets(app: Flask) -> ShellAssets:
    """Hash the static folder, then the shell page rendered with those hashes, then the version."""
    assert app.static_folder is not None and app.static_url_path is not None
    assets = ShellAssets(app.static_url_path, hash_static(Path(app.static_folder)))
    app.extensions["outpost_shell"] = assets  # `asset_url` reads it while the shell renders
    with app.test_request_context(SHELL_URL):
        assets = replace(assets, shell_hash=content_hash(render_template("index.html").encode()))
    assert app.jinja_loader is not None
    worker_source, _, _ = app.jinja_loader.get_source(app.jinja_env, "sw.js")
    return replace(assets, version=compute_version(assets.precache(), worker_source))


def shell_assets(app: Flask) -> ShellAssets:
    """The app's hash table (see `register_shell`)."""
    return app.extensions["outpost_shell"]  # type: ignore[no-any-return]


def register_shell(app: Flask) -> None:
    """Serve the shell at /, the worker, the manifest and a health check; hash the assets once."""
    override = os.environ.get("OUTPOST_STATIC_FOLDER")
    if override:
        app.static_folder = str(Path(override).resolve())
    app.add_template_global(lambda path: shell_assets(app).asset_url(path), "asset_url")
    assets = build_assets(app)
    app.extensions["outpost_shell"] = assets

    @app.get(SHELL_URL)
    def index() -> Response:
        """The app shell (revalidated on every load, so new asset hashes are seen at once)."""
        resp = Response(render_template("index.html"), mimetype="text/html")
        resp.headers["Cache-Control"] = "no-cache"
        return resp

    @app.get("/sw.js")
    def service_worker() -> Response:
        """The service worker, with the precache list and version filled in."""
        body = render_template(
            "sw.js",
            version=assets.version,
            cache_prefix=CACHE_PREFIX,
            shell_url=SHELL_URL,
            hash_length=HASH_LENGTH,
            precache=assets.precache(),
            js_url=f"{assets.static_url_path}/js",  # the worker imports the store's layers from here
        )
        resp = Response(body, content_type=CONTENT_TYPES[".js"])
        resp.headers["Cache-Control"] = "no-cache"
        return resp

    @app.get(f"/{MANIFEST}")
    def manifest() -> Response:
        """The web app manifest, from the root so that its scope can be `/`."""
        assert app.static_folder is not None
        resp = send_from_directory(app.static_folder, MANIFEST, mimetype=CONTENT_TYPES[".webmanifest"])
        resp.headers["Cache-Control"] = "no-cache"
        return resp

    @app.get("/healthz")
    def healthz() -> Any:
        """A health check for load balancers."""
        return jsonify({"status": "ok"})

    @app.after_request
    def static_headers(resp: Response) -> Response:
        """Explicit content types for assets; a year of caching when the URL carries the current hash."""
        if request.endpoint != "static":
            return resp
        filename = (request.view_args or {}).get("filename", "")
        content_type = CONTENT_TYPES.get(Path(filename).suffix)
        if content_type and resp.status_code == 200:
            resp.headers["Content-Type"] = content_type
        wanted = request.args.get("v")
        if wanted is not None and wanted == assets.hashes.get(filename):
            resp.headers["Cache-Control"] = IMMUTABLE
        else:
            resp.headers["Cache-Control"] = "no-cache"
        return resp
