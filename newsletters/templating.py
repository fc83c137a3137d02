"""Helpers the templates share."""

from __future__ import annotations

from typing import Any

from flask import Flask

from newsletters import labels


def field_attrs(field: Any, hint: str | None, base: dict[str, Any]) -> dict[str, Any]:
    """Attributes that tie a form control to its hint and error message (WCAG 1.3.1, 3.3.1)."""
    attrs = dict(base)
    described = []
    if hint:
        described.append(f"{field.id}-hint")
    if field.errors:
        described.append(f"{field.id}-error")
        attrs["aria-invalid"] = "true"
    if described:
        attrs["aria-describedby"] = " ".join(described)
    return attrs


def init_app(app: Flask) -> None:
    labels.init_app(app)
    app.jinja_env.globals["field_attrs"] = field_attrs
