"""The translation catalogues: Danish complete and faithful, and in step with the sources.

Danish is what KL's readers see first, so a missing or broken Danish text is a bug:
an untranslated msgid shows English on a Danish page, and a lost or misspelt
%(name)s placeholder raises at render time (Jinja's newstyle gettext formats every
template string, even without variables).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.frontend import ExtractMessages
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "newsletters" / "translations"
POT = TRANSLATIONS / "messages.pot"
DA_PO = TRANSLATIONS / "da" / "LC_MESSAGES" / "messages.po"
EN_PO = TRANSLATIONS / "en" / "LC_MESSAGES" / "messages.po"

# Any printf-style conversion, named or not; "%%" is a literal percent sign.
CONVERSION = re.compile(r"%(?:\((?P<name>[^)]*)\))?[#0\- +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[a-zA-Z%]")

HOW_TO_FIX = (
    "Run `make extract-messages`, then translate the new texts in "
    "newsletters/translations/da/LC_MESSAGES/messages.po and run `make translations`."
)


def _read(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as f:
        return read_po(f, locale=locale)


def _messages(catalog: Catalog) -> list[Message]:
    return [m for m in catalog if m.id]


def _ids(catalog: Catalog) -> set[str]:
    # Plural entries have a tuple id; the singular identifies them.
    return {m.id if isinstance(m.id, str) else m.id[0] for m in _messages(catalog)}


def _strings(message: Message) -> list[str]:
    return [message.string] if isinstance(message.string, str) else list(message.string)


def _placeholders(text: str) -> list[str]:
    """The names of the %(name)s placeholders in text, sorted and without repeats."""
    return sorted({m["name"] for m in CONVERSION.finditer(text) if m["name"] is not None})


def _label(message: Message) -> str:
    return message.id if isinstance(message.id, str) else message.id[0]


@pytest.fixture(scope="module")
def danish() -> Catalog:
    return _read(DA_PO, "da")


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """The msgids in the sources now, extracted exactly as `make extract-messages` does."""
    out = tmp_path_factory.mktemp("i18n") / "messages.pot"
    cmd = ExtractMessages()
    cmd.mapping_file = str(ROOT / "babel.cfg")
    cmd.keywords = ["_l", "lazy_gettext"]  # the Makefile's -k options
    cmd.no_location = True
    cmd.sort_output = True
    cmd.project = "newsletters"
    cmd.output_file = str(out)
    cmd.input_paths = [str(ROOT)]
    cmd.ensure_finalized()
    cmd.run()
    return _read(out)


def test_every_danish_message_is_translated(danish: Catalog) -> None:
    untranslated = [_label(m) for m in _messages(danish) if not all(s.strip() for s in _strings(m))]
    fuzzy = [_label(m) for m in _messages(danish) if m.fuzzy]
    assert not untranslated and not fuzzy, (
        (
            "Danish translation missing for:\n  " + "\n  ".join(untranslated) + "\n"
            if untranslated
            else ""
        )
        + (
            "Fuzzy (check the Danish, then remove the flag):\n  " + "\n  ".join(fuzzy) + "\n"
            if fuzzy
            else ""
        )
        + "Fill in newsletters/translations/da/LC_MESSAGES/messages.po and run `make translations`."
    )


def test_danish_keeps_the_placeholders(danish: Catalog) -> None:
    problems = []
    for message in _messages(danish):
        ids = [message.id] if isinstance(message.id, str) else list(message.id)
        expected = sorted({name for i in ids for name in _placeholders(i)})
        for string in _strings(message):
            if _placeholders(string) != expected:
                problems.append(f"{_label(message)!r}: {_placeholders(string)} != {expected}")
            # The translation must format wherever the original does.
            values = dict.fromkeys(expected, "x")
            try:
                ids[0] % values
            except (ValueError, TypeError, KeyError):
                continue
            try:
                string % values
            except (ValueError, TypeError, KeyError) as exc:
                problems.append(f"{_label(message)!r}: {string!r} does not format ({exc})")
    assert not problems, "Placeholders differ between msgid and msgstr:\n  " + "\n  ".join(problems)


def test_danish_keeps_the_line_structure(danish: Catalog) -> None:
    # A mail's subject is the first line of its text template: a translation that adds
    # a line break would spill the subject into the body.
    def shape(text: str) -> tuple[int, bool]:
        return text.count("\n"), text != text.strip()

    problems = [
        _label(m) for m in _messages(danish) for s in _strings(m) if shape(s) != shape(_label(m))
    ]
    assert not problems, "Line breaks or edge whitespace differ from the msgid:\n  " + (
        "\n  ".join(problems)
    )


def test_catalogues_are_up_to_date_with_the_sources(extracted: Catalog, danish: Catalog) -> None:
    in_sources = _ids(extracted)
    for name, catalog in (
        ("messages.pot", _read(POT)),
        ("da/LC_MESSAGES/messages.po", danish),
        ("en/LC_MESSAGES/messages.po", _read(EN_PO, "en")),
    ):
        in_catalog = _ids(catalog)
        new = sorted(in_sources - in_catalog)
        stale = sorted(in_catalog - in_sources)
        assert not new and not stale, (
            f"{name} is out of date with the templates and code.\n"
            + (f"New texts, not in {name}:\n  " + "\n  ".join(new) + "\n" if new else "")
            + (
                f"Texts in {name} no longer in the sources:\n  " + "\n  ".join(stale) + "\n"
                if stale
                else ""
            )
            + HOW_TO_FIX
        )


@pytest.mark.parametrize("locale", ["da", "en"])
def test_the_committed_catalogue_is_what_its_po_file_compiles_to(locale: str) -> None:
    # The compiled catalogues are kept in the repository, so that every way of installing
    # (make, pip install, pip install -e, a wheel, a read-only site-packages) has them
    # without a build step; this keeps them in step with the .po files.
    po = TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po"
    mo = po.with_suffix(".mo")
    fix = f"Run `make translations` and commit {mo.relative_to(ROOT)}."
    assert mo.is_file(), f"{mo.relative_to(ROOT)} is missing. {fix}"
    compiled = io.BytesIO()
    write_mo(compiled, _read(po, locale))  # exactly what `pybabel compile` writes
    assert mo.read_bytes() == compiled.getvalue(), (
        f"{mo.relative_to(ROOT)} is not compiled from the current {po.name}. {fix}"
    )
