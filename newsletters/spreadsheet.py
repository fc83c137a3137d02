"""CSV for spreadsheets: the one writer every CSV export uses.

A cell a spreadsheet could run as a formula (CSV injection) is defused wherever it
would start one. Quoting every cell keeps `x;=1+1;` one cell for a reader that honours
quotes; but Excel splits on the separator of the reader's locale (`;` in Danish Excel)
and, after a closing quote, reads on to that separator, so each piece between any
separator could start a cell. Every such piece that starts like a formula (`=`, `+`,
`-`, `@`, TAB, CR; after spaces or quotes too) gets an apostrophe in front, which
makes it text in Excel, LibreOffice and Google Sheets.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator

# Characters that make a spreadsheet read a cell as a formula.
FORMULA_START = "=+-@\t\r"
# Where a spreadsheet may start a cell: the cell's start, or after any separator a
# locale or a user may choose (comma, semicolon, tab, pipe) or a line break.
_FORMULA = re.compile(r'(^|[,;|\t\r\n])([ "]*)(?=[=+\-@\t\r])')


def defuse(value: object) -> str:
    """The cell as text that no spreadsheet runs, however it splits the line."""
    text = "" if value is None else str(value)
    return _FORMULA.sub(lambda m: f"{m.group(1)}{m.group(2)}'", text)


class CsvWriter:
    """Rows as CSV text: every cell quoted and defused, CRLF line ends."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")

    def row(self, cells: Iterable[object]) -> str:
        self._writer.writerow([defuse(cell) for cell in cells])
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text


def csv_lines(header: Iterable[str], rows: Iterable[Iterable[object]]) -> Iterator[str]:
    """The header and the rows as CSV lines, streamed."""
    writer = CsvWriter()
    yield writer.row(header)
    for row in rows:
        yield writer.row(row)


def for_excel(lines: Iterable[str]) -> Iterator[bytes]:
    """CSV lines as a download for a spreadsheet: UTF-8 with a BOM (so Excel reads æøå)."""
    yield "\ufeff".encode()
    for line in lines:
        yield line.encode("utf-8")
