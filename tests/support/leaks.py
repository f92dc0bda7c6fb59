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
  spell 6 bytes of the secret (a JWT header carries a key id this way).

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


@dataclass(frozen=True)
class Needles:
    """Every shape of every fragment of one secret: folded ones and case-sensitive ones."""

    name: str
    folded: dict[str, str]
    exact: dict[str, str]

    @classmethod
    def of(cls, name: str, secret: str) -> Needles:
        value = _without_armour(secret)
        folded: dict[str, str] = {}
        exact: dict[str, str] = {}
        for fragment in _windows(value, FRAGMENT):
            for shape, needle in _char_shapes(fragment).items():
                if needle.strip():
                    folded.setdefault(_fold(needle), shape)
        for shape, needle in _base64_needles(value):
            exact.setdefault(needle, shape)
        return cls(name, folded, exact)


def find_leaks(secrets: Mapping[str, str], texts: Iterable[str]) -> list[Leak]:
    """Every fragment of a secret found in ``texts`` (first hit per shape and secret)."""
    needles = [Needles.of(name, value) for name, value in secrets.items()]
    leaks: list[Leak] = []
    for text in texts:
        folded = _fold(text)
        for secret in needles:
            seen: set[str] = set()
            for haystack, table in ((folded, secret.folded), (text, secret.exact)):
                for needle, shape in table.items():
                    if shape in seen:
                        continue
                    at = haystack.find(needle)
                    if at != -1:
                        seen.add(shape)
                        leaks.append(Leak(secret.name, shape, needle, at))
    return leaks
