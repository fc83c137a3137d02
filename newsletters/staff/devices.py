"""A person's words for a browser's User-Agent: which browser on which system, enough to
tell one's own sessions apart (no library: a handful of families covers KL's staff)."""

from __future__ import annotations

from dataclasses import dataclass

# Checked in order: Edge and Opera also say "Chrome", Chrome also says "Safari".
_BROWSERS = (
    ("Edg/", "Microsoft Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("HeadlessChrome/", "Chrome"),
    ("Chrome/", "Chrome"),
    ("Chromium/", "Chromium"),
    ("Safari/", "Safari"),
)
_SYSTEMS = (
    ("Windows", "Windows"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


@dataclass(frozen=True)
class Device:
    browser: str | None
    system: str | None


def describe(user_agent: str | None) -> Device:
    """The browser family and system named in the User-Agent (None where unknown)."""
    text = (user_agent or "")[:512]
    browser = next((name for marker, name in _BROWSERS if marker in text), None)
    system = next((name for marker, name in _SYSTEMS if marker in text), None)
    return Device(browser=browser, system=system)
