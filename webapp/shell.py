"""The app shell: the page a phone opens (the PWA itself arrives with the phone-app work)."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, render_template


def register_shell(app: Flask) -> None:
    """Serve the shell at / and a health check for load balancers."""

    @app.get("/")
    def index() -> Any:
        return render_template("index.html")

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify({"status": "ok"})
