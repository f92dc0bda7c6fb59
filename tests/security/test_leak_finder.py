"""The sentinel grep (tests/support/leaks.py) can fail: it finds a planted fragment in
every shape the e2e sentinel test relies on it for, and nothing in clean text.

Also the shapes the echoing fakes produce, run through the redactor: what the grep finds
before redaction it no longer finds after (the base64 of a JSON-escaped key id in a JWT
header was the one shape the redactor missed)."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.security.test_redaction import SHAPES as ADAPTER_SHAPES
from tests.support.leaks import find_leaks

from rocky_runner.redact import Redactor

SECRET = "quote'back\\slash\"-ünï☃-SENTINEL-123"


def _jwt_header(kid: str) -> str:
    header = json.dumps({"typ": "JWT", "alg": "RS256", "kid": kid})
    return base64.urlsafe_b64encode(header.encode()).decode().rstrip("=")


def _duckdb_clipped(secret: str, pad: int) -> str:
    literal = "'" + secret.replace("'", "''") + "'"
    with duckdb.connect() as con:
        try:
            con.execute(f"SELECT {'x,' * pad} {literal} FROMM t")
        except duckdb.Error as exc:
            return str(exc)
    raise AssertionError("no error")


PLANTED = {
    "exact": f"login failed for {SECRET}",
    "clipped-start": f"LINE 1: ...{SECRET[-9:]}' FROMM t",
    "clipped-end": f"... {SECRET[:7]}...",
    "upper": SECRET.upper(),
    "lower": SECRET.lower(),
    "json": json.dumps({"password": SECRET}),
    "json-twice": json.dumps(json.dumps({"password": SECRET})),
    "repr": repr({"password": SECRET}),
    "url": "token=" + quote(SECRET, safe=""),
    "url-plus": "token=" + quote_plus(SECRET),
    "url-lower-hex": "token=" + quote(SECRET, safe="").lower(),
    "base64": "Authorization: Basic " + base64.b64encode(b"u:" + SECRET.encode()).decode(),
    "base64-shifted": base64.b64encode(b"xy:" + SECRET.encode()).decode(),
    "jwt-header": _jwt_header(SECRET) + ".payload.sig",
}


@pytest.mark.parametrize("shape", sorted(PLANTED))
def test_finds_a_planted_fragment(shape: str) -> None:
    assert find_leaks({"s": SECRET}, [PLANTED[shape]]), shape


@pytest.mark.parametrize("pad", range(0, 60, 7))
def test_finds_the_fragment_duckdb_clips(pad: int) -> None:
    error = _duckdb_clipped(SECRET, pad)
    assert find_leaks({"s": SECRET}, [error]), error


def test_finds_a_fragment_of_a_pem_body_not_its_armour() -> None:
    pem = (
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcw\n"
        "-----END PRIVATE KEY-----\n"
    )
    assert find_leaks({"k": pem}, ["-----BEGIN PRIVATE KEY----- -----END PRIVATE KEY-----"]) == []
    assert find_leaks({"k": pem}, ["bad key data: ...ANBgkqhk..."])


def test_clean_text_has_no_leak() -> None:
    text = (
        json.dumps({"error": "Incorrect username or password was specified.", "code": "390100"})
        + " LINE 1: SELECT *** FROMM t  Authorization: Basic ***"
    )
    assert find_leaks({"s": SECRET}, [text]) == []
    # Five characters of the secret are not a fragment.
    assert find_leaks({"s": SECRET}, ["SENTI", "L-123"]) == []


@pytest.mark.parametrize("shape", sorted(PLANTED))
def test_redactor_leaves_nothing_the_grep_finds(shape: str) -> None:
    out = Redactor([SECRET])(PLANTED[shape])
    assert find_leaks({"s": SECRET}, [out]) == [], out


awkward = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=6, max_size=200
).filter(lambda s: len(s.strip()) >= 6 and "-----" not in s)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secret=awkward, shape=st.sampled_from(["jwt", "json", "url", "basic"]))
def test_encoded_shapes_of_random_secrets_are_found_then_redacted(secret: str, shape: str) -> None:
    """Random awkward secrets in the encoded shapes the echoing fakes produce: the grep
    finds each before redaction and nothing after."""
    text = {
        "jwt": "assertion=" + _jwt_header(secret) + ".e30.c2ln",
        "json": json.dumps({"message": "Invalid access token: " + secret}),
        "url": "x-databricks-reason-phrase: " + quote("Invalid access token " + secret),
        "basic": "Basic " + base64.b64encode(("tok:" + secret).encode()).decode(),
    }[shape]
    if shape in ("json", "url") or len(secret.encode()) >= 9:
        # A base64 fragment is 6 bytes at the text's alignment: a secret under 9 bytes
        # may, misaligned, leave only 3 bytes' worth of whole base64 characters.
        assert find_leaks({"s": secret}, [text])
    out = Redactor([secret])(text)
    assert find_leaks({"s": secret}, [out]) == [], (shape, out)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    secret=awkward,
    shape=st.sampled_from(sorted(ADAPTER_SHAPES)),
    clip=st.integers(0, 400),
    clip_end=st.booleans(),
)
def test_every_adapter_error_shape_leaves_no_encoded_fragment(
    secret: str, shape: str, clip: int, clip_end: bool
) -> None:
    """test_redaction's adapter error shapes, checked for every encoded form of every
    fragment (its own check looks for the raw and case-folded fragments only)."""
    message = ADAPTER_SHAPES[shape](secret)
    clipped = message[:-clip] + "..." if clip_end else "..." + message[clip:]
    redact = Redactor(["unrelated-other-secret", secret])
    for text in (message, clipped):
        out = redact(text)
        assert find_leaks({"s": secret}, [out]) == [], (shape, out)
