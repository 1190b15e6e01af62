"""The operator's console: server-rendered pages under /console, served by its own process
with the ops identity (`accessa run console`, producer_api/console/app.py), not by the API.

`mount(app)` adds the routes, the static files and the handler that renders a refused login
as a page. A console session (from `accessa console`'s one-time link) is its own credential:
no route here reads a user's Bearer token, and no API route reads the console cookie."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from producer_api.console.routes import ConsoleDenied, denied, router

STATIC = Path(__file__).parent / "static"


def mount(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    app.add_exception_handler(ConsoleDenied, denied)


__all__ = ["mount"]
