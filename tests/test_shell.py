"""The app shell on the server: content-hashed assets, the service worker, the manifest, the page."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import struct
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from webapp import create_app
from webapp.services import services
from webapp.shell import CACHE_PREFIX, HASH_LENGTH, shell_assets

STATIC = Path(__file__).resolve().parent.parent / "webapp" / "static"


def make_app(tmp_path: Path) -> Flask:
    """An app on a throw-away SQLite file."""
    return create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path}/outpost.db",
            "SCHEMA_SETUP": "create_all",
            "FAST_PASSWORD_HASH": True,
            "TESTING": True,
            "SECRET_KEY": "test",
        }
    )


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    """The app, serving the repository's static folder."""
    application = make_app(tmp_path)
    yield application
    services(application).db.dispose()


def get(app: Flask, url: str) -> TestResponse:
    """GET `url`, read the whole body and close the response (file responses hold a file open)."""
    resp = app.test_client().get(url)
    resp.get_data()
    resp.close()
    return resp


def expected_assets(folder: Path) -> dict[str, str]:
    """Every file under `folder` an app would ship (not hidden, not Python source), hashed."""
    found = {}
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if (
            path.is_file()
            and path.suffix not in {".py", ".pyc"}
            and not any(p.startswith(".") or p == "__pycache__" for p in rel.parts)
        ):
            found[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()[:HASH_LENGTH]
    return found


def worker_constants(body: str) -> dict[str, Any]:
    """The VERSION, CACHE_PREFIX and PRECACHE constants of a rendered /sw.js."""
    found = {}
    for name in ("VERSION", "CACHE_PREFIX", "PRECACHE"):
        match = re.search(rf"^const {name} = (.+);$", body, re.MULTILINE)
        assert match, f"/sw.js has no `const {name} = …;` line"
        found[name] = json.loads(match.group(1))
    return found


class Tags(HTMLParser):
    """Every start tag of a page, with its attributes, and the text inside <script> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.script_text.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        """The attributes of every `tag` whose attributes include `attrs`."""
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def parse(html: str) -> Tags:
    """The page's tags."""
    tags = Tags()
    tags.feed(html)
    return tags


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (and a check that it is a PNG)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# --- /sw.js -----------------------------------------------------------------------------------


def test_the_worker_is_served_from_the_root_as_javascript_that_is_always_revalidated(app: Flask) -> None:
    resp = get(app, "/sw.js")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert resp.headers["Cache-Control"] == "no-cache"


def test_the_precache_list_holds_the_shell_and_every_static_file_with_its_content_hash(app: Flask) -> None:
    consts = worker_constants(get(app, "/sw.js").text)
    precache = {entry["url"]: entry["hash"] for entry in consts["PRECACHE"]}
    assert consts["PRECACHE"][0]["url"] == "/"
    shell_html = get(app, "/").data
    assert precache.pop("/") == hashlib.sha256(shell_html).hexdigest()[:HASH_LENGTH]
    expected = {
        ("/manifest.webmanifest" if rel == "manifest.webmanifest" else f"/static/{rel}"): digest
        for rel, digest in expected_assets(STATIC).items()
    }
    assert precache == expected
    for must in ("/static/css/app.css", "/static/js/pwa.js", "/manifest.webmanifest", "/static/icons/icon-512.png"):
        assert must in precache
    assert "/static/icons/make_icons.py" not in precache  # the generator is source, not an asset


def test_the_version_is_one_hash_over_all_hashes_and_names_the_cache(app: Flask) -> None:
    consts = worker_constants(get(app, "/sw.js").text)
    assets = shell_assets(app)
    assert consts["VERSION"] == assets.version
    assert re.fullmatch(rf"[0-9a-f]{{{HASH_LENGTH}}}", assets.version)
    assert consts["CACHE_PREFIX"] == CACHE_PREFIX
    assert consts["PRECACHE"] == assets.precache()


def test_a_changed_or_added_static_file_changes_the_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "static"
    shutil.copytree(STATIC, copy)
    monkeypatch.setenv("OUTPOST_STATIC_FOLDER", str(copy))
    versions = []
    for step in ("as is", "css changed", "js added"):
        if step == "css changed":
            with (copy / "css" / "app.css").open("a") as fh:
                fh.write("\n/* changed */\n")
        elif step == "js added":
            (copy / "js" / "later.js").write_text("export const later = 1;\n")
        workdir = tmp_path / step.replace(" ", "-")
        workdir.mkdir()
        application = make_app(workdir)
        assets = shell_assets(application)
        versions.append(assets.version)
        services(application).db.dispose()
        if step == "js added":
            assert (
                assets.hashes["js/later.js"] == hashlib.sha256(b"export const later = 1;\n").hexdigest()[:HASH_LENGTH]
            )
            page = get(application, "/").text
            assert f"/static/css/app.css?v={assets.hashes['css/app.css']}" in page
    assert len(set(versions)) == 3


def test_a_static_file_under_its_current_hash_is_cached_for_a_year_and_otherwise_revalidated(app: Flask) -> None:
    digest = shell_assets(app).hashes["css/app.css"]
    fresh = get(app, f"/static/css/app.css?v={digest}")
    assert fresh.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    for url in ("/static/css/app.css", "/static/css/app.css?v=0000000000000000"):
        assert get(app, url).headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    ("url", "content_type"),
    [
        ("/static/js/pwa.js", "text/javascript; charset=utf-8"),
        ("/static/css/app.css", "text/css; charset=utf-8"),
        ("/static/manifest.webmanifest", "application/manifest+json"),
        ("/manifest.webmanifest", "application/manifest+json"),
        ("/static/icons/icon-192.png", "image/png"),
    ],
)
def test_assets_are_served_with_explicit_content_types(app: Flask, url: str, content_type: str) -> None:
    resp = get(app, url)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == content_type


# --- the manifest and icons --------------------------------------------------------------------


def test_the_manifest_describes_an_installable_standalone_app(app: Flask) -> None:
    resp = get(app, "/manifest.webmanifest")
    assert resp.headers["Cache-Control"] == "no-cache"
    manifest = json.loads(resp.data)
    assert manifest["name"] == "Outpost CRM"
    assert manifest["short_name"] == "Outpost"
    assert manifest["start_url"] == "/"
    assert manifest["scope"] == "/"
    assert manifest["display"] == "standalone"
    assert re.fullmatch(r"#[0-9a-f]{6}", manifest["theme_color"])
    assert re.fullmatch(r"#[0-9a-f]{6}", manifest["background_color"])
    icons = {(icon["sizes"], icon["purpose"]): icon for icon in manifest["icons"]}
    for key in (("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")):
        assert key in icons, f"no {key[1]} icon of {key[0]}"
    for icon in manifest["icons"]:
        assert icon["type"] == "image/png"
        path = STATIC / icon["src"].removeprefix("/static/")
        width, height = png_size(path)
        assert f"{width}x{height}" == icon["sizes"]
        served = get(app, icon["src"])
        assert served.status_code == 200
        assert served.headers["Content-Type"] == "image/png"


def test_the_icon_generator_reproduces_the_committed_icons() -> None:
    spec = importlib.util.spec_from_file_location("make_icons", STATIC / "icons" / "make_icons.py")
    assert spec and spec.loader
    make_icons = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_icons)
    for name in ("icon-192.png", "maskable-192.png"):
        size, maskable = make_icons.ICONS[name]
        assert make_icons.png(size, size, make_icons.render(size, maskable)) == (STATIC / "icons" / name).read_bytes()


# --- the page ----------------------------------------------------------------------------------


def test_the_page_loads_its_scripts_and_styles_by_content_hash_and_has_no_inline_script(app: Flask) -> None:
    resp = get(app, "/")
    assert resp.headers["Cache-Control"] == "no-cache"
    page = parse(resp.text)
    assets = shell_assets(app)
    hashes = assets.hashes
    modules = [a["src"] for a in page.find("script", type="module")]
    assert modules == [f"/static/js/pwa.js?v={hashes['js/pwa.js']}", assets.asset_url("js/app.js")]
    assert all(a.get("src") for _, a in page.tags if _ == "script"), "every script is an external file"
    assert page.script_text == []
    assert not any(k.startswith("on") for _, a in page.tags for k in a), "no inline event handlers"
    assert page.find("link", rel="stylesheet")[0]["href"] == f"/static/css/app.css?v={hashes['css/app.css']}"
    assert page.find("link", rel="manifest")[0]["href"] == "/manifest.webmanifest"


def test_the_page_is_a_phone_app_shell(app: Flask) -> None:
    page = parse(get(app, "/").text)
    assert "width=device-width" in (page.find("meta", name="viewport")[0]["content"] or "")
    assert page.find("meta", name="theme-color")
    assert page.find("header", **{"class": "topbar"})
    assert page.find("button", id="more-button", **{"aria-label": "More"})
    assert page.find("main", id="view")
    assert page.find("div", id="banners")
    assert page.find("div", id="dialogs")


def test_asset_url_of_a_file_that_does_not_exist_is_its_plain_url(app: Flask) -> None:
    assert shell_assets(app).asset_url("js/nowhere.js") == "/static/js/nowhere.js"
    assert shell_assets(app).asset_url("js/pwa.js").startswith("/static/js/pwa.js?v=")


def test_the_health_check_still_answers(app: Flask) -> None:
    assert get(app, "/healthz").json == {"status": "ok"}
