"""The shared redactor (rocky_runner.redact), as properties: a random secret planted at
a random offset into an error shaped like each adapter's errors (JSON-escaped login
bodies, repr'd dicts and tuples, URL query strings, basic-auth headers, other case,
clipped contexts, a message cut at a length limit) and into real DuckDB errors whose
``LINE 1: ...`` window clips the literal; no fragment of 6+ characters of the secret,
in any case, survives redaction. The operator's redaction is the same object."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from urllib.parse import quote, quote_plus

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rocky_runner.redact import MASK, MIN_FRAGMENT, Redactor

#: Secrets of awkward shapes: quotes, backslashes, unicode, controls, 6..200 characters.
secrets = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=MIN_FRAGMENT, max_size=200
).filter(lambda s: len(s.strip()) >= MIN_FRAGMENT)
filler = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=300)


def fold(text: str) -> str:
    return "".join(c.lower() for c in text)


def surviving_fragments(secret: str, text: str) -> list[str]:
    """Every 6-character window of the secret (case-insensitively) still in ``text``."""
    folded_secret, folded_text = fold(secret), fold(text)
    return [
        folded_secret[i : i + MIN_FRAGMENT]
        for i in range(len(folded_secret) - MIN_FRAGMENT + 1)
        if folded_secret[i : i + MIN_FRAGMENT] in folded_text
    ]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# Each shape turns a secret into the text an adapter's error would carry.
SHAPES: dict[str, Callable[[str], str]] = {
    # Snowflake: a login refusal that echoes the request body (JSON-escaped).
    "snowflake-login-body": lambda s: (
        "250001 (08001): Failed to connect to DB: acct.snowflakecomputing.com:443. "
        "Incorrect username or password was specified. body="
        + json.dumps({"data": {"LOGIN_NAME": "etl", "PASSWORD": s}})
    ),
    # Snowflake private key: cryptography's error with the key material repr'd.
    "snowflake-private-key": lambda s: f"ValueError: Could not deserialize key data: {s!r}",
    # Databricks: the connector's repr'd error context dict.
    "databricks-context": lambda s: (
        "Error during request to server: "
        + repr({"http-code": 403, "error_message": f"Invalid access token {s}"})
    ),
    # Databricks: a token in a retried URL (URL-encoded, both flavours).
    "databricks-url": lambda s: (
        "HTTPSConnectionPool(host='dbc.cloud.databricks.com', port=443): Max retries "
        f"exceeded with url: /sql/1.0/warehouses/x?token={quote(s, safe='')}&t={quote_plus(s)}"
    ),
    # Basic auth header echoed by a proxy (base64 of user:secret, any alignment).
    "basic-auth": lambda s: f"407 Proxy Authentication: Authorization: Basic {_b64('token:' + s)}",
    "basic-auth-shifted": lambda s: f"Authorization: Basic {_b64('tok:' + s)} {_b64('x:' + s)}",
    # BigQuery: google-auth's RefreshError is a repr'd tuple holding the response.
    "bigquery-refresh": lambda s: repr(
        ("invalid_grant: Invalid JWT Signature.", {"error_description": s, "body": json.dumps(s)})
    ),
    # JSON inside JSON: a response body quoted again by a logging layer.
    "nested-json": lambda s: json.dumps({"message": json.dumps({"password": s})}),
    # Another case: an error that upper-cases what it echoes.
    "upper": lambda s: f"INVALID CREDENTIAL {s.upper()}",
    "lower": lambda s: f"invalid credential {s.lower()}",
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    secret=secrets,
    shape=st.sampled_from(sorted(SHAPES)),
    before=filler,
    after=filler,
    clip=st.integers(0, 400),
    clip_end=st.booleans(),
)
def test_no_fragment_survives_any_adapter_error_shape(
    secret: str, shape: str, before: str, after: str, clip: int, clip_end: bool
) -> None:
    message = before + SHAPES[shape](secret) + after
    # A clipped context: the message cut at an arbitrary point, with an ellipsis.
    clipped = message[:-clip] + "..." if clip_end else "..." + message[clip:]
    redact = Redactor(["unrelated-other-secret", secret])
    for text in (message, clipped):
        out = redact(text)
        assert surviving_fragments(secret, out) == [], (shape, out)


def _duckdb_error(sql: str) -> str:
    with duckdb.connect() as con:
        try:
            con.execute(sql)
        except duckdb.Error as exc:
            return f"{type(exc).__name__}: {exc}"
    raise AssertionError(f"no error from {sql!r}")


def _literal(secret: str) -> str:
    return "'" + secret.replace("'", "''") + "'"


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    secret=secrets.filter(lambda s: "\x00" not in s),
    pad_before=st.integers(0, 160),
    pad_after=st.integers(0, 160),
    form=st.sampled_from(["syntax-after", "syntax-before", "cast", "table"]),
)
def test_no_fragment_survives_real_duckdb_context_window(
    secret: str, pad_before: int, pad_after: int, form: str
) -> None:
    """Real DuckDB errors whose context window cuts the echoed literal at either end."""
    left, right = "a," * (pad_before // 2), ", b" * (pad_after // 3)
    sql = {
        "syntax-after": f"SELECT {left} {_literal(secret)} {right} FROMM t",
        "syntax-before": f"SELECT {left} garbage garbage {_literal(secret)} {right}",
        "cast": f"SELECT {left} CAST({_literal(secret)} AS INTEGER) {right}",
        "table": 'SELECT * FROM "' + secret.replace('"', '""') + '"',
    }[form]
    error = _duckdb_error(sql)
    out = Redactor([secret])(error)
    assert surviving_fragments(secret, out) == [], (form, error, out)


def test_duckdb_clipped_window_fragment_is_masked() -> None:
    """The case the issue found: ``LINE 1: ...-SENTINEL-123'`` kept the secret's end."""
    secret = "quote'back\\slash-SENTINEL-123"
    for pad in range(0, 120, 3):
        error = _duckdb_error(f"SELECT {'x,' * pad} {_literal(secret)} FROMM t")
        out = Redactor([secret])(error)
        assert surviving_fragments(secret, out) == [], out


def test_readable_text_stays_readable() -> None:
    """Only the secret goes: the rest of the message, and a service account's public
    fields and PEM armour, stay as they were."""
    pem = (
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
    )
    account = json.dumps({"type": "service_account", "private_key": pem, "client_email": "a@b.c"})
    redact = Redactor(["hunter2-Password", account])
    out = redact("login of etl@acct failed: HUNTER2-password rejected; key for a@b.c")
    assert out == f"login of etl@acct failed: {MASK} rejected; key for a@b.c"
    assert (
        redact("-----BEGIN PRIVATE KEY----- is armour") == "-----BEGIN PRIVATE KEY----- is armour"
    )
    assert MASK in redact("bad key MIIEvQIBADANBgkq")


@pytest.mark.parametrize("secret", ["abc", "p4ss"])
def test_short_secret_is_masked_whole(secret: str) -> None:
    assert Redactor([secret])(f"x {secret.upper()} y") == f"x {MASK} y"


def test_operator_redacts_with_the_runner_redactor() -> None:
    """The operator's redaction is the runner's: a JSON-escaped password (the leak of
    issue 12) is masked in a discovery failure message."""
    from rocky_operator.kube.prepare import redact_exception

    secret = 'pa"ss\\word-123'
    exc = RuntimeError("login failed: " + json.dumps({"password": secret}))
    out = redact_exception(exc, {"ROCKY_SNOWFLAKE_PASSWORD": secret})
    assert surviving_fragments(secret, out) == []
    assert MASK in out
