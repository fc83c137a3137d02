"""Sending an edition to part of a newsletter's readers: a segment is a condition on the
municipal facts we hold about each subscriber (municipality, region, role), combined with
AND and OR (and NOT, and parentheses), e.g.

    region=Hovedstaden AND role=borgmester
    (kommune=Aarhus OR kommune="Ringkøbing-Skjern") AND NOT rolle=direktør

Field names in English or Danish (municipality/kommune, region, role/rolle); AND/OG,
OR/ELLER, NOT/IKKE; `=` or `!=`; a value with spaces in double quotes. Municipalities and
regions are checked against the 98 and the five (a region is derived from the
municipality); roles are compared without regard to case. The parsed segment is stored on
the edition in its canonical spelling and becomes one SQL condition of the send's single
INSERT ... SELECT: no subscriber is loaded into Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask_babel import gettext as _
from sqlalchemy import and_, false, func, not_, or_

from newsletters.subscriptions.models import Subscriber
from newsletters.subscriptions.municipalities import MUNICIPALITIES, REGIONS

MAX_LENGTH = 1000
MAX_DEPTH = 20

FIELDS = {
    "municipality": "municipality",
    "kommune": "municipality",
    "region": "region",
    "role": "role",
    "rolle": "role",
}
_AND = {"and", "og"}
_OR = {"or", "eller"}
_NOT = {"not", "ikke"}

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<lparen>\()|(?P<rparen>\))|(?P<op>!=|=)|
        "(?P<quoted>[^"\r\n]*)"|
        (?P<word>[^\s()=!"]+)
    )""",
    re.VERBOSE,
)


class SegmentError(ValueError):
    """The segment cannot be read; the message says where, for the person who wrote it."""


@dataclass(frozen=True)
class Condition:
    field: str  # municipality, region, role
    value: str  # canonical: a municipality's or region's own spelling; a role lower-cased
    negated: bool = False

    def canonical(self) -> str:
        value = f'"{self.value}"' if re.search(r'[\s()=!"]', self.value) else self.value
        return f"{self.field}{'!=' if self.negated else '='}{value}"


@dataclass(frozen=True)
class Not:
    part: Node

    def canonical(self) -> str:
        return f"NOT {_wrap(self.part)}"


@dataclass(frozen=True)
class All:
    parts: tuple[Node, ...]

    def canonical(self) -> str:
        return " AND ".join(_wrap(p) for p in self.parts)


@dataclass(frozen=True)
class Any_:
    parts: tuple[Node, ...]

    def canonical(self) -> str:
        return " OR ".join(_wrap(p) for p in self.parts)


Node = Condition | Not | All | Any_


def _wrap(node: Node) -> str:
    return f"({node.canonical()})" if isinstance(node, Any_ | All) else node.canonical()


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise SegmentError(_("The segment cannot be read at “%(text)s”.", text=text[pos:][:40]))
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise SegmentError(_("The segment ends too soon."))
        self.i += 1
        return token

    def keyword(self, words: set[str]) -> bool:
        token = self.peek()
        if token and token[0] == "word" and token[1].lower() in words:
            self.i += 1
            return True
        return False

    def expr(self) -> Node:
        parts = [self.term()]
        while self.keyword(_OR):
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else Any_(tuple(parts))

    def term(self) -> Node:
        parts = [self.factor()]
        while self.keyword(_AND):
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    def factor(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SegmentError(_("The segment has too many levels of parentheses."))
        try:
            if self.keyword(_NOT):
                return Not(self.factor())
            kind, value = self.take()
            if kind == "lparen":
                node = self.expr()
                if self.take()[0] != "rparen":
                    raise SegmentError(_("A parenthesis is not closed."))
                return node
            if kind != "word":
                raise SegmentError(_("Expected a field name, found “%(text)s”.", text=value))
            return self.condition(value)
        finally:
            self.depth -= 1

    def condition(self, name: str) -> Condition:
        field = FIELDS.get(name.lower())
        if field is None:
            raise SegmentError(
                _(
                    "Unknown field “%(name)s”: use municipality, region or role.",
                    name=name[:40],
                )
            )
        kind, op = self.take()
        if kind != "op":
            raise SegmentError(_("Expected = or != after “%(name)s”.", name=name[:40]))
        kind, raw = self.take()
        if kind not in ("word", "quoted") or not raw.strip():
            raise SegmentError(_("Expected a value after “%(name)s%(op)s”.", name=name, op=op))
        return Condition(field, _canonical_value(field, raw.strip()), negated=op == "!=")


_MUNICIPALITY = {m.casefold(): m for m in MUNICIPALITIES}
_REGION = {r.casefold(): r for r in REGIONS} | {f"region {r}".casefold(): r for r in REGIONS}


def _canonical_value(field: str, raw: str) -> str:
    if field == "municipality":
        found = _MUNICIPALITY.get(raw.casefold())
        if found is None:
            raise SegmentError(_("“%(name)s” is not one of the 98 municipalities.", name=raw[:60]))
        return found
    if field == "region":
        found = _REGION.get(raw.casefold())
        if found is None:
            raise SegmentError(
                _(
                    "“%(name)s” is not a region: use %(regions)s.",
                    name=raw[:60],
                    regions=", ".join(REGIONS),
                )
            )
        return found
    if len(raw) > 100:
        raise SegmentError(_("The role is too long."))
    return raw.casefold()


def parse(text: str | None) -> Node | None:
    """The segment written in `text`, or None for everyone (an empty text)."""
    text = (text or "").strip()
    if not text:
        return None
    if len(text) > MAX_LENGTH:
        raise SegmentError(_("The segment is too long."))
    if any(c in text for c in "\x00\r\n"):
        raise SegmentError(_("The segment must be one line."))
    parser = _Parser(_tokens(text))
    node = parser.expr()
    if parser.peek() is not None:
        raise SegmentError(
            _("The segment cannot be read at “%(text)s”.", text=parser.peek()[1][:40])
        )
    return node


def canonical(text: str | None) -> str | None:
    """The segment in its one spelling (what is stored on the edition), or None."""
    node = parse(text)
    return node.canonical() if node is not None else None


def condition(node: Node | None, subscriber=Subscriber):
    """The SQL condition on `subscriber` (the model or an alias) for the segment."""
    if node is None:
        return None
    if isinstance(node, Any_):
        return or_(*(condition(p, subscriber) for p in node.parts))
    if isinstance(node, All):
        return and_(*(condition(p, subscriber) for p in node.parts))
    if isinstance(node, Not):
        return not_(condition(node.part, subscriber))
    if node.field == "municipality":
        match = subscriber.municipality == node.value
    elif node.field == "region":
        members = REGIONS.get(node.value, ())
        match = subscriber.municipality.in_(members) if members else false()
    else:
        match = func.lower(subscriber.role) == node.value
    return not_(match) if node.negated else match
