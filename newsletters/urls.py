"""Absolute links, for pages and mails alike: always PUBLIC_BASE_URL, never the Host a
request claims.

A page that is cached (the public web version of an edition) or a mail that is sent
must not carry a link to whatever host an attacker put in the Host header: so no code
builds an absolute link with `url_for(..., _external=True)`, `request.host_url` or
`request.url_root` (tests/test_input_hardening.py checks the source for them).
"""

from __future__ import annotations

from typing import Any

from flask import current_app


def public_base() -> str:
    """PUBLIC_BASE_URL without a trailing slash (create_app strips it)."""
    return current_app.config["PUBLIC_BASE_URL"]


def public_link(path: str) -> str:
    """PUBLIC_BASE_URL followed by `path` (which starts with a slash)."""
    return f"{public_base()}{path}"


def public_url(endpoint: str, /, **values: Any) -> str:
    """The absolute link to one of the app's pages, under PUBLIC_BASE_URL.

    Built from the URL map alone (not bound to the request: no Host, no script root),
    so a request, the CLI and the worker make the same link.
    """
    adapter = current_app.url_map.bind("localhost", script_name="/", url_scheme="http")
    return public_link(adapter.build(endpoint, values, force_external=False))
