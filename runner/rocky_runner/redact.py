"""Secret redaction for every string the runner emits (result message, stderr log).

A secret can reach a message in more shapes than its raw value: JSON-escaped (a
private key's newlines become ``\\n``), repr-escaped, URL-encoded, base64 (HTTP basic
auth), or one line of a multi-line PEM key, or a field of a service account JSON. The
redactor knows all of those shapes and replaces the longest first.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus

from rocky_runner.contract import SECRET_ENV_NAMES

MASK = "***"
#: Derived fragments (lines, JSON fields) shorter than this are not redacted on their
#: own: "-----BEGIN" or "{" are not secrets, and masking them would only garble text.
_MIN_FRAGMENT = 8
#: Service account JSON fields whose values are secret.
_SECRET_JSON_FIELDS = ("private_key", "private_key_id", "client_secret", "refresh_token")
#: PEM armour lines are public boilerplate.
_PEM_ARMOUR = ("-----BEGIN", "-----END")


def _encodings(value: str) -> set[str]:
    forms = {value, json.dumps(value)[1:-1], repr(value)[1:-1], quote(value, safe=""),
             quote_plus(value)}  # fmt: skip
    forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
    raw = value.encode("utf-8", "surrogateescape")
    forms.add(base64.b64encode(raw).decode("ascii"))
    forms.add(base64.urlsafe_b64encode(raw).decode("ascii"))
    return forms


def _fragments(value: str) -> set[str]:
    """Secret parts of a structured value that may be printed on their own."""
    parts: set[str] = set()
    try:
        doc = json.loads(value)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        for field in _SECRET_JSON_FIELDS:
            inner = doc.get(field)
            if isinstance(inner, str) and inner:
                parts.add(inner)
                parts.update(_fragments(inner))
    for line in value.splitlines():
        line = line.strip()
        if len(line) >= _MIN_FRAGMENT and not line.startswith(_PEM_ARMOUR):
            parts.add(line)
    return {p for p in parts if len(p) >= _MIN_FRAGMENT}


class Redactor:
    """Replaces every known shape of every secret with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = tuple(s for s in secrets if s)
        forms: set[str] = set()
        for secret in self._secrets:
            if not secret:
                continue
            for piece in {secret, *_fragments(secret)}:
                forms.update(_encodings(piece))
        forms.discard("")
        # Longest first, so a secret's encoding is replaced before its substrings.
        self._forms = sorted(forms, key=len, reverse=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Redactor:
        """Every value of the contract's credential variables (the raw variables, so even
        a credential the runner fails to parse is redacted)."""
        return cls(v for name in SECRET_ENV_NAMES if (v := environ.get(name)))

    def extended(self, secrets: Iterable[str]) -> Redactor:
        """A redactor that also knows ``secrets`` (e.g. read from credential files)."""
        return Redactor((*self._secrets, *secrets))

    def __call__(self, text: str) -> str:
        # Repeat while it still shrinks: masks that end up adjacent could spell a
        # secret made of mask characters again ("***" + "***").
        for _ in range(8):
            before = len(text)
            for form in self._forms:
                if form in text:
                    text = text.replace(form, MASK)
            if len(text) >= before or not any(f in text for f in self._forms):
                break
        return text
