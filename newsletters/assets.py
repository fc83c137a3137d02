"""Serves Det Fælles Designsystem from node_modules (installed by `make setup`, never copied
into the repository)."""

from functools import lru_cache
from pathlib import Path

from flask import Blueprint, abort, current_app, send_from_directory

bp = Blueprint("assets", __name__, url_prefix="/assets")


@bp.get("/dkfds/<path:filename>")
def dkfds(filename: str):
    dist = Path(current_app.config["DKFDS_DIST"])
    if not dist.is_dir():
        abort(404)
    response = send_from_directory(dist, filename, max_age=7 * 86400)
    return response


@lru_cache(maxsize=4)
def _installed(dist: str) -> bool:
    return Path(dist).is_dir()


@bp.app_context_processor
def _dkfds_context() -> dict:
    # An installed wheel has no node_modules: the pages then use the app's own CSS only,
    # without a link that would 404.
    return {"dkfds_available": _installed(current_app.config["DKFDS_DIST"])}
