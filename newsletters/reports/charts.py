"""The report's charts as SVG pictures, drawn on the server with pygal.

Served as images (`<img>` with a text alternative, and the numbers in a table beside
each), so the page needs no script and no inline style; the picture carries its own
styles and nothing from outside (no tooltip script from pygal's site).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from functools import lru_cache


@lru_cache(maxsize=1)
def _config() -> dict:
    """pygal and the charts' settings, loaded when the first chart is drawn: only the
    report pages draw, and pygal would add to the start of every process."""
    import pygal.style

    # pygal puts an import hook for its map plugins (unused here) on sys.meta_path; it
    # has no find_spec, so every later import that passes it warns (ImportWarning), and
    # the import system of newer Pythons no longer falls back to it. Taken off again.
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "PluginImportFixer"]
    # KL-ish colours with enough contrast on white (WCAG 1.4.11: 3:1 for graphics).
    style = pygal.style.Style(
        background="white",
        plot_background="white",
        foreground="#1a1a1a",
        foreground_strong="#1a1a1a",
        foreground_subtle="#595959",
        colors=("#0059b3", "#b3261e", "#2e7d32", "#6a1b9a", "#8a5a00", "#37474f"),
        font_family="IBM Plex Sans, Arial, sans-serif",
        label_font_size=13,
        major_label_font_size=13,
        legend_font_size=14,
        title_font_size=16,
    )
    return {
        "style": style,
        "js": [],  # no tooltip script fetched from pygal's site
        "width": 800,
        "height": 360,
        "disable_xml_declaration": False,
        "show_minor_x_labels": False,
        "truncate_label": -1,
        "print_values": False,
        "no_data_text": "",
    }


def _every(labels: Sequence[str], most: int = 12) -> list[str]:
    step = max(1, -(-len(labels) // most))
    return list(labels[::step])


# Drawing is the slow part (pygal: tens of milliseconds for a few hundred bars), and a
# finished send's or a past week's numbers do not change: each picture is kept per
# process by what it shows, so asking again for the same numbers costs nothing.
@lru_cache(maxsize=128)
def _draw(kind: str, title: str, labels: tuple[str, ...], series: tuple) -> bytes:
    import pygal

    config = _config()
    if kind == "hbar":
        chart = pygal.HorizontalBar(title=title, **{**config, "print_values": True})
        for name, value in series:
            chart.add(name, value)
        return chart.render()
    if kind == "line":
        chart = pygal.Line(title=title, show_dots=len(labels) <= 60, **config)
    else:
        chart = pygal.Bar(title=title, **config)
    chart.x_labels = list(labels)
    chart.x_labels_major = _every(labels)
    for name, values in series:
        chart.add(name, list(values))
    return chart.render()


def line(title: str, labels: Sequence[str], series: dict[str, Sequence[int]]) -> bytes:
    return _draw("line", title, tuple(labels), tuple((k, tuple(v)) for k, v in series.items()))


def bars(title: str, labels: Sequence[str], series: dict[str, Sequence[int]]) -> bytes:
    return _draw("bar", title, tuple(labels), tuple((k, tuple(v)) for k, v in series.items()))


def horizontal_bars(title: str, values: dict[str, int]) -> bytes:
    return _draw("hbar", title, (), tuple(values.items()))
