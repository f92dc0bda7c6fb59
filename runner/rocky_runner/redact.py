"""Secret redaction for every string the runner or the operator emits.

One redactor, shared by the runner (result message, stderr log) and the operator
(conditions, Events, output ConfigMap, log), so the two cannot disagree on what a
secret looks like. A secret can reach a message in more shapes than its raw value:

- encoded: JSON-escaped (a private key's newlines become ``\\n``, a quote ``\\"``),
  repr-escaped, JSON inside JSON, URL-encoded, base64 (HTTP basic auth) at any of the
  three byte alignments, so a base64 of *part* of a secret is caught too, and base64
  of the JSON-escaped form (a JWT header's key id);
- in another case (an error that upper- or lower-cases what it echoes);
- clipped: DuckDB shows at most a window of the query (``LINE 1: ...-SENTINEL-123'``),
  and a message cut to a length limit ends in the middle of whatever it echoed.

So the redactor masks not only whole forms but every run of text made of pieces of
:data:`MIN_FRAGMENT` or more characters of a form, case-insensitively. The price is
that a word shared by an error template and a secret (6+ characters) is masked too:
a garbled message is the lesser harm. Secrets shorter than that are masked whole.

A structured secret (a service-account JSON document) is masked whole, and its secret
fields (``private_key``...) piece by piece; its public fields (``client_email``,
``project_id``) and PEM armour lines stay readable.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Mapping
from urllib.parse import quote, quote_plus

from rocky_runner.contract import ENV_REDACT_ENV, SECRET_ENV_NAMES

MASK = "***"
#: A run of this many characters of a secret (in any of its forms) is masked wherever
#: it appears: the shortest fragment that still says something about the secret.
MIN_FRAGMENT = 6
#: Service account JSON fields whose values are secret.
_SECRET_JSON_FIELDS = ("private_key", "private_key_id", "client_secret", "refresh_token")
#: PEM armour lines are public boilerplate.
_PEM_ARMOUR = ("-----BEGIN", "-----END")
#: Masks that end up adjacent could spell a secret made of mask characters again;
#: passes repeat while the text shrinks, at most this often.
_MAX_PASSES = 16


def _fold(text: str) -> str:
    """Lower-case character by character, so positions map back one to many."""
    if text.isascii():
        return text.lower()
    return "".join(c.lower() for c in text)


def _base64_forms(raw: bytes) -> Iterator[str]:
    # Every byte alignment: a fragment of the secret that starts at any offset encodes
    # to a substring of one of these three (padding and the last quantum aside).
    for shift in range(3):
        part = raw[shift:]
        if part:
            yield base64.b64encode(part).decode("ascii").rstrip("=")
            yield base64.urlsafe_b64encode(part).decode("ascii").rstrip("=")


def encodings(value: str) -> set[str]:
    """Every shape in which ``value`` may be echoed."""
    escaped = {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    escaped.add(repr(value)[1:-1])
    nested = {json.dumps(e)[1:-1] for e in escaped} | {repr(e)[1:-1] for e in escaped}
    # SQL literals and identifiers double their quote characters.
    quoted = {value.replace("'", "''"), value.replace('"', '""')}
    forms = {value, *escaped, *nested, *quoted}
    for errors in ("surrogateescape", "surrogatepass"):
        try:
            raw = value.encode("utf-8", errors)
        except UnicodeError:
            continue
        forms.update(_base64_forms(raw))
        # base64 of JSON: a JWT header carries a key id JSON-escaped, then encoded.
        forms.update(_base64_forms(json.dumps(value)[1:-1].encode("ascii")))
        forms.add(quote(value, safe="", errors=errors))
        forms.add(quote(value, errors=errors))  # quote()'s default keeps "/"
        forms.add(quote_plus(value, errors=errors))
        break
    forms.discard("")
    return forms


def _without_armour(value: str) -> str:
    lines = value.splitlines(keepends=True)
    if not any(line.lstrip().startswith(_PEM_ARMOUR) for line in lines):
        return value
    return "".join(line for line in lines if not line.lstrip().startswith(_PEM_ARMOUR))


def _pieces(secret: str) -> tuple[set[str], set[str]]:
    """(values masked only whole, values masked down to any fragment of them)."""
    try:
        doc = json.loads(secret)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        fields = [v for f in _SECRET_JSON_FIELDS if isinstance(v := doc.get(f), str) and v]
        if fields:
            return {secret}, {_without_armour(v) for v in fields}
    return {secret}, {_without_armour(secret)}


class Redactor:
    """Replaces every form of every secret, and every fragment of one, with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = tuple(s for s in secrets if s)
        whole: set[str] = set()
        grams: set[str] = set()
        for secret in self._secrets:
            entire, fragmentable = _pieces(secret)
            for value in entire:
                whole.update(_fold(f) for f in encodings(value))
            for value in fragmentable:
                for form in encodings(value):
                    folded = _fold(form)
                    if len(folded) < MIN_FRAGMENT:
                        whole.add(folded)
                    else:
                        grams.update(_windows(folded))
        # Whole forms of 6+ characters that are not already covered by the windows.
        self._whole = sorted(
            (f for f in whole if f and not (len(f) >= MIN_FRAGMENT and _covered(f, grams))),
            key=len,
            reverse=True,
        )
        self._grams = frozenset(grams)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Redactor:
        """Every value of the contract's credential variables (the raw variables, so even
        a credential the runner fails to parse is redacted), and of the variables that
        ``ROCKY_REDACT_ENV`` names (the run's own Secret-sourced env)."""
        listed = (n.strip() for n in environ.get(ENV_REDACT_ENV, "").split(","))
        names = (*SECRET_ENV_NAMES, *(n for n in listed if n))
        return cls(v for name in names if (v := environ.get(name)))

    def extended(self, secrets: Iterable[str]) -> Redactor:
        """A redactor that also knows ``secrets`` (e.g. read from credential files)."""
        return Redactor((*self._secrets, *secrets))

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def __call__(self, text: str) -> str:
        if not self._secrets or not text:
            return text
        for _ in range(_MAX_PASSES):
            masked = self._mask_once(text)
            if masked is None:
                return text
            shrank = len(masked) < len(text)
            text = masked
            if not shrank:
                break
        return text

    def _mask_once(self, text: str) -> str | None:
        """The text with every match masked, or None when nothing matched."""
        folded, origin = _fold_with_origin(text)
        hit = bytearray(len(folded))
        found = False
        grams = self._grams
        if grams:
            last = len(folded) - MIN_FRAGMENT
            for i in range(last + 1):
                if folded[i : i + MIN_FRAGMENT] in grams:
                    hit[i : i + MIN_FRAGMENT] = b"\x01" * MIN_FRAGMENT
                    found = True
        for form in self._whole:
            start = folded.find(form)
            while start != -1:
                hit[start : start + len(form)] = b"\x01" * len(form)
                found = True
                start = folded.find(form, start + 1)
        if not found:
            return None
        if origin is None:
            masked_chars = hit
        else:
            masked_chars = bytearray(len(text))
            for pos, flag in enumerate(hit):
                if flag:
                    masked_chars[origin[pos]] = 1
        out: list[str] = []
        previous = False
        for index, char in enumerate(text):
            if masked_chars[index]:
                if not previous:
                    out.append(MASK)
                previous = True
            else:
                out.append(char)
                previous = False
        return "".join(out)


def _windows(folded: str) -> Iterator[str]:
    for i in range(len(folded) - MIN_FRAGMENT + 1):
        yield folded[i : i + MIN_FRAGMENT]


def _covered(folded: str, grams: set[str]) -> bool:
    return all(w in grams for w in _windows(folded))


def _fold_with_origin(text: str) -> tuple[str, list[int] | None]:
    """The folded text and, per folded position, the index of its original character
    (None when they are the same: ASCII folds one to one)."""
    if text.isascii():
        return text.lower(), None
    parts: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        low = char.lower()
        parts.append(low)
        origin.extend([index] * len(low))
    return "".join(parts), origin
