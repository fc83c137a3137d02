"""Filters per feed: the words an item must or must not contain, and its categories.

Pure functions (no database, no app): the fetcher applies them as it stores items, the
services when an editor changes a feed's filter, the benchmark to measure their cost.

How a word matches (documented to editors on the filter page and in the README):
- Case does not matter, Danish letters included: text is compared casefolded and
  NFC-normalised, so "KØBENHAVN", "københavn" and a decomposed "ø" (o + combining
  stroke) are the same word, as are "Århus" and "århus". "Aarhus" is not "Århus": the
  old spelling is another word (give both if both are wanted). Whitespace is collapsed.
- A word matches anywhere in the title or summary, inside other words too: "skole"
  matches "folkeskolen" and "kommune" matches "kommunens", as Danish compounds want.
- A word in quotation marks ("KL", “EU”, «EU» or 'KL') matches only as a whole word:
  "KL" matches "KL's bestyrelse" and "(KL)" but not "klima"; a short abbreviation
  would otherwise match inside many words. Letters, digits and the Danish letters are
  word characters; anything else (spaces, punctuation, an apostrophe) ends a word.
An item passes when it contains one of the include words (if there are any), none of
the exclude words, and has one of the categories (if any; a category is compared
whole, casefolded).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Limits of a filter: words per list and characters per word.
MAX_WORDS = 50
MAX_WORD_CHARS = 100

_SPACE = re.compile(r"\s+")
# Separators of the words typed on the page or given to the CLI: commas and line ends.
_SEPARATORS = re.compile(r"[,\r\n]+")


class FilterError(ValueError):
    """A filter's words cannot be used (control characters, too many, too long)."""


def fold(text: str) -> str:
    """Text as it is compared, whitespace left as it is: the NFC of its casefold, so a
    decomposed "å" (a + ring) is the composed one (casefolding works per character, so
    normalising once afterwards is enough). ASCII needs no normalisation."""
    text = text.casefold()
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def normalise(text: str) -> str:
    """A word as it is compared: folded, whitespace collapsed."""
    return _SPACE.sub(" ", fold(text or "")).strip()


# Quotation marks around a word that must match whole: straight, Danish and English.
_QUOTES = {'"': '"', "“": "”", "”": "”", "„": "“", "«": "»", "»": "«", "'": "'", "‘": "’"}


def whole_word(word: str) -> str | None:
    """The word inside quotation marks, if `word` is quoted (it must match whole)."""
    if len(word) > 2 and _QUOTES.get(word[0]) == word[-1]:
        inner = word[1:-1].strip()
        return inner or None
    return None


def _matcher(words: Iterable[str]) -> tuple[tuple[str, ...], re.Pattern[str] | None]:
    """Normalised words as (substrings, one pattern of the whole words or None)."""
    parts: list[str] = []
    wholes: list[str] = []
    for word in words:
        inner = whole_word(word.strip())
        if inner is None:
            key = normalise(word)
            if key:
                parts.append(key)
        else:
            wholes.append(re.escape(normalise(inner)).replace("\\ ", r"\s+"))
    if not wholes:
        return tuple(parts), None
    # \w is Unicode: æ, ø, å and digits are inside a word, so "KL" is not in "KLØFT".
    return tuple(parts), re.compile(r"(?<!\w)(?:" + "|".join(wholes) + r")(?!\w)")


def _check_word(word: str, what: str) -> str:
    if any(unicodedata.category(c) == "Cc" and c != "\t" for c in word):
        raise FilterError(f"{what}: {word!r} contains a control character (a line end, NUL, ...)")
    word = _SPACE.sub(" ", word).strip()
    if len(word) > MAX_WORD_CHARS:
        raise FilterError(f"{what}: a word is longer than {MAX_WORD_CHARS} characters")
    return word


def clean_words(values: Iterable[str], what: str, *, split_lines: bool = True) -> list[str]:
    """The words of `values`, each split at commas (and line ends if `split_lines`),
    trimmed, without duplicates (compared normalised), in the order given.

    FilterError on a control character in a word (a line end where lines do not
    separate: the CLI), more than MAX_WORDS words or a word over MAX_WORD_CHARS."""
    words: list[str] = []
    seen: set[str] = set()
    for value in values:
        value = value or ""
        parts = _SEPARATORS.split(value) if split_lines else value.split(",")
        for part in parts:
            word = _check_word(part, what)
            key = normalise(word)
            if not key or key in seen:
                continue
            seen.add(key)
            words.append(word)
    if len(words) > MAX_WORDS:
        raise FilterError(f"{what}: more than {MAX_WORDS} words")
    return words


def join_words(words: Sequence[str]) -> str:
    """Words as stored (one a line)."""
    return "\n".join(words)


def split_words(stored: str | None) -> list[str]:
    return [w for w in (stored or "").split("\n") if w]


@dataclass(frozen=True)
class ItemFilter:
    """A feed's filter, normalised once for the many items it judges."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    categories: frozenset[str] = frozenset()
    # The quoted words, which match only whole: one pattern each, or None.
    include_whole: re.Pattern[str] | None = None
    exclude_whole: re.Pattern[str] | None = None

    @classmethod
    def of(cls, include: str | None, exclude: str | None, categories: str | None) -> ItemFilter:
        """From the stored columns (one word a line)."""
        include_parts, include_whole = _matcher(split_words(include))
        exclude_parts, exclude_whole = _matcher(split_words(exclude))
        return cls(
            include=include_parts,
            exclude=exclude_parts,
            categories=frozenset(normalise(w) for w in split_words(categories)),
            include_whole=include_whole,
            exclude_whole=exclude_whole,
        )

    @property
    def empty(self) -> bool:
        return not (
            self.include
            or self.exclude
            or self.categories
            or self.include_whole
            or self.exclude_whole
        )

    def passes(self, title: str, summary: str, categories: Iterable[str] = ()) -> bool:
        """Whether an item with this title, summary and categories goes into digests."""
        if self.empty:
            return True
        includes = self.include or self.include_whole
        if includes or self.exclude or self.exclude_whole:
            # Titles and summaries are stored with their whitespace collapsed already
            # (parsing.py), so a phrase matches without collapsing it again here.
            text = fold(f"{title}\n{summary}")
            if includes and not (
                any(word in text for word in self.include)
                or (self.include_whole is not None and self.include_whole.search(text))
            ):
                return False
            if any(word in text for word in self.exclude):
                return False
            if self.exclude_whole is not None and self.exclude_whole.search(text):
                return False
        return not self.categories or any(normalise(c) in self.categories for c in categories)
