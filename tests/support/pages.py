"""Reading pages in tests: CSRF tokens and form values from real HTML."""

from __future__ import annotations

import re


def csrf_token(html: str | bytes) -> str:
    if isinstance(html, bytes):
        html = html.decode()
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'id="csrf_token" name="csrf_token" type="hidden" value="([^"]+)"', html
    )
    if not match:
        raise AssertionError("no csrf_token on the page")
    return match.group(1)
