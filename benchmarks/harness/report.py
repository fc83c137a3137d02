"""Each figure beside its baseline and its bar, in one table, and the run's verdict."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Row:
    figure: str
    value: str
    baseline: str = ""
    bar: str = ""
    ok: bool | None = None  # None: the figure has no bar


@dataclass
class Table:
    """`judged=False` (a --quick run): the bars are shown beside the figures, not judged."""

    title: str
    judged: bool = True
    rows: list[Row] = field(default_factory=list)

    def add(
        self, figure: str, value: str, baseline: str = "", bar: str = "", ok: bool | None = None
    ) -> None:
        self.rows.append(Row(figure, value, baseline, bar, ok))

    def verdict(self, row: Row) -> str:
        if row.ok is None:
            return ""
        if not self.judged:
            return "not judged (--quick)"
        return "PASS" if row.ok else "FAIL"

    def lines(self) -> list[str]:
        head = ("figure", "this run", "baseline", "bar", "verdict")
        cells = [head] + [
            (r.figure, r.value, r.baseline, r.bar, self.verdict(r)) for r in self.rows
        ]
        widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
        out = [self.title]
        for c in cells:
            out.append("  " + "  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)))
        return [line.rstrip() for line in out]

    def print(self) -> None:
        print("\n".join(self.lines()))

    @property
    def failed(self) -> list[str]:
        """The figures over their bar (none when not judged)."""
        if not self.judged:
            return []
        return [r.figure for r in self.rows if r.ok is False]
