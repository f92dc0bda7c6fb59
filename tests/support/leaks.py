"""Find any fragment of a secret in a text, in every shape an error may carry it.

The sentinel tests (issue 12) plant secrets and then grep everything a run left behind
(status, Events, ConfigMaps, termination messages, logs) with :func:`find_leaks`. It is
written independently of the redactor (``rocky_runner.redact``) so that the two do not
share a blind spot: a fragment is every run of :data:`FRAGMENT` characters of a secret,
looked for

- as is and case-folded (an error that upper- or lower-cases what it echoes);
- JSON-escaped (ASCII and not), JSON-escaped twice, repr-escaped, SQL-quoted;
- URL-encoded (``quote`` and ``quote_plus``, upper- or lower-case hex);
- base64 (standard and URL-safe) of the raw UTF-8 and of the JSON-escaped form, at each
  of the three byte alignments: every :data:`B64_WINDOW` characters of such an encoding
  spell 6 bytes of the secret (a JWT header carries a key id this way). So a secret of
  fewer than 9 bytes, base64-encoded at an unlucky alignment, may show only 3 bytes' worth
  of whole base64 characters, which is below the fragment size and not looked for.

A PEM secret is looked for without its armour lines (``-----BEGIN ...``), which are the
same in every key. Pure; no pytest.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

#: Characters of a secret that make a fragment.
FRAGMENT = 6
#: Characters of a base64 encoding that spell :data:`FRAGMENT` bytes.
B64_WINDOW = 8


@dataclass(frozen=True)
class Leak:
    secret_name: str
    shape: str
    needle: str
    #: Where in the text (the folded text for folded shapes).
    offset: int

    def context(self, text: str, width: int = 40) -> str:
        return text[max(0, self.offset - width) : self.offset + len(self.needle) + width]


def _fold(text: str) -> str:
    return "".join(c.lower() for c in text)


def _without_armour(value: str) -> str:
    lines = value.splitlines(keepends=True)
    if not any(line.lstrip().startswith("-----") for line in lines):
        return value
    return "".join(line for line in lines if not line.lstrip().startswith("-----"))


def _windows(value: str, size: int) -> Iterator[str]:
    if len(value) <= size:
        yield value
        return
    for i in range(len(value) - size + 1):
        yield value[i : i + size]


def _char_shapes(fragment: str) -> dict[str, str]:
    """Shapes made character by character: a fragment's shape is a piece of the
    secret's shape, so looking for each fragment's shape finds clipped ones too."""
    ascii_json = json.dumps(fragment)[1:-1]
    shapes = {
        "exact": fragment,
        "json": ascii_json,
        "json-unicode": json.dumps(fragment, ensure_ascii=False)[1:-1],
        "json-twice": json.dumps(ascii_json)[1:-1],
        "repr": repr(fragment)[1:-1],
        "sql-single": fragment.replace("'", "''"),
        "sql-double": fragment.replace('"', '""'),
    }
    try:
        shapes["url"] = quote(fragment, safe="")
        shapes["url-keeps-slash"] = quote(fragment)
        shapes["url-plus"] = quote_plus(fragment)
    except UnicodeEncodeError:  # a lone surrogate
        pass
    return shapes


def _base64_needles(value: str) -> Iterator[tuple[str, str]]:
    for label, text in (("base64", value), ("base64-of-json", json.dumps(value)[1:-1])):
        raw = text.encode("utf-8", "surrogatepass")
        for shift in range(3):
            part = raw[shift:]
            whole = len(part) // 3 * 3  # full quanta only: they depend on the secret alone
            for flavour, encode in (
                ("", base64.b64encode),
                ("-urlsafe", base64.urlsafe_b64encode),
            ):
                encoded = encode(part[:whole]).decode("ascii")
                for i in range(0, max(0, len(encoded) - B64_WINDOW) + 1):
                    window = encoded[i : i + B64_WINDOW]
                    if len(window) == B64_WINDOW:
                        yield label + flavour, window


class _Index:
    """Needles looked up by their first characters, so one pass over a text finds them
    all (tens of thousands of needles, megabytes of logs)."""

    def __init__(self, needles: Mapping[str, tuple[str, str]]) -> None:
        self.width = min((len(n) for n in needles), default=0)
        self.by_prefix: dict[str, list[tuple[str, str, str]]] = {}
        for needle, (name, shape) in needles.items():
            self.by_prefix.setdefault(needle[: self.width], []).append((needle, name, shape))

    def scan(self, haystack: str) -> Iterator[tuple[int, str, str, str]]:
        width, by_prefix = self.width, self.by_prefix
        if not width:
            return
        for i in range(len(haystack) - width + 1):
            found = by_prefix.get(haystack[i : i + width])
            if found:
                for needle, name, shape in found:
                    if haystack.startswith(needle, i):
                        yield i, needle, name, shape


def needles_of(secret: str) -> tuple[dict[str, str], dict[str, str]]:
    """(folded needles, case-sensitive needles) of one secret, each with its shape."""
    value = _without_armour(secret)
    folded: dict[str, str] = {}
    exact: dict[str, str] = {}
    for fragment in _windows(value, FRAGMENT):
        for shape, needle in _char_shapes(fragment).items():
            if needle.strip():
                folded.setdefault(_fold(needle), shape)
    for shape, needle in _base64_needles(value):
        exact.setdefault(needle, shape)
    return folded, exact


class LeakFinder:
    """:func:`find_leaks` with the needles built once, for many texts."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        folded: dict[str, tuple[str, str]] = {}
        exact: dict[str, tuple[str, str]] = {}
        for name, value in secrets.items():
            f, e = needles_of(value)
            for needle, shape in f.items():
                folded.setdefault(needle, (name, shape))
            for needle, shape in e.items():
                exact.setdefault(needle, (name, shape))
        self._folded = _Index(folded)
        self._exact = _Index(exact)

    def __call__(self, text: str) -> list[Leak]:
        """Every fragment found in ``text`` (first hit per secret and shape)."""
        leaks: list[Leak] = []
        seen: set[tuple[str, str]] = set()
        for index, haystack in ((self._folded, _fold(text)), (self._exact, text)):
            for at, needle, name, shape in index.scan(haystack):
                if (name, shape) not in seen:
                    seen.add((name, shape))
                    leaks.append(Leak(name, shape, needle, at))
        return leaks


def find_leaks(secrets: Mapping[str, str], texts: Iterable[str]) -> list[Leak]:
    """Every fragment of a secret found in ``texts`` (first hit per shape and secret)."""
    finder = LeakFinder(secrets)
    return [leak for text in texts for leak in finder(text)]
