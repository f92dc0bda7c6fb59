"""The result message codec and the runner's redaction, as properties (hypothesis):
whatever the error text, metadata or asset key, ``encode_result`` gives at most 4096
bytes of valid JSON that decodes back with its outcome and failure_kind, says how much
of the error was cut, and never carries a planted secret; one exit code per kind."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rocky_runner.contract import (
    EXIT_CODE_BY_KIND,
    KIND_BY_EXIT_CODE,
    MAX_MESSAGE_BYTES,
    PRODUCED_KINDS,
    FailureKind,
    TableResult,
    decode_result,
    encode_result,
    exit_code_for,
)
from rocky_runner.redact import MASK, Redactor

#: Any code point, lone surrogates and control characters included.
any_text = st.text(st.characters(codec=None), max_size=3000)
#: Undecodable bytes decoded the way an OS error message may arrive.
escaped_bytes = st.binary(max_size=3000).map(lambda b: b.decode("utf-8", "surrogateescape"))
huge_text = st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=40), st.integers(1, 5000))
error_text = st.one_of(any_text, escaped_bytes, huge_text)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), error_text)
metadata = st.dictionaries(
    st.text(max_size=40), st.one_of(json_leaf, st.lists(json_leaf, max_size=5)), max_size=20
)
asset_keys = st.lists(st.one_of(st.text(max_size=30), error_text), min_size=0, max_size=8)
kinds = st.sampled_from(PRODUCED_KINDS)


def _check(data: bytes, original: TableResult) -> TableResult:
    assert len(data) <= MAX_MESSAGE_BYTES
    doc = json.loads(data.decode("utf-8"))  # valid UTF-8 and valid JSON
    assert isinstance(doc, dict)
    decoded = decode_result(data)
    assert decoded.outcome == original.outcome
    assert decoded.failure_kind == original.failure_kind
    assert decoded.rows_copied == original.rows_copied
    # Strict UTF-8 round trip: no lone surrogate survives, not even as a JSON escape.
    json.dumps(doc, ensure_ascii=False).encode("utf-8")
    return decoded


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(error=error_text, kind=kinds, meta=metadata, key=asset_keys)
def test_failed_result_always_fits_and_decodes(
    error: str, kind: FailureKind, meta: dict[str, Any], key: list[str]
) -> None:
    result = TableResult(
        asset_key=key, outcome="failed", failure_kind=kind, error=error, metadata=meta
    )
    decoded = _check(encode_result(result), result)
    assert decoded.error is not None
    if decoded.error_truncated_bytes is not None:
        assert decoded.error_truncated_bytes > 0
        kept = decoded.error.removesuffix("…")
        cleaned = error.encode("utf-8", "replace").decode("utf-8")
        assert cleaned.startswith(kept)
        assert len(kept.encode("utf-8")) + decoded.error_truncated_bytes == len(
            cleaned.encode("utf-8")
        )


@settings(max_examples=80, deadline=None)
@given(meta=metadata, key=asset_keys, rows=st.integers(0, 2**62))
def test_copied_result_always_fits_and_decodes(
    meta: dict[str, Any], key: list[str], rows: int
) -> None:
    result = TableResult(asset_key=key, outcome="copied", rows_copied=rows, metadata=meta)
    _check(encode_result(result), result)


def test_small_result_is_kept_verbatim() -> None:
    result = TableResult(
        asset_key=["duckdb", "acme", "orders"],
        outcome="failed",
        failure_kind=FailureKind.NOT_FOUND,
        error="Catalog Error: Table with name orders does not exist!",
        metadata={"strategy": "incremental"},
    )
    decoded = decode_result(encode_result(result))
    assert decoded == result
    assert decoded.error_truncated_bytes is None


def test_huge_error_keeps_its_start_and_says_how_much_was_cut() -> None:
    error = "Binder Error: column x not found. " + "é" * 10_000
    result = TableResult(asset_key=["a"], outcome="failed", failure_kind="unknown", error=error)
    data = encode_result(result)
    decoded = decode_result(data)
    assert len(data) <= MAX_MESSAGE_BYTES
    assert decoded.error is not None
    assert decoded.error.startswith("Binder Error: column x not found.")
    assert decoded.error_truncated_bytes is not None
    assert decoded.error_truncated_bytes > 10_000


def test_huge_metadata_does_not_cost_the_whole_error() -> None:
    result = TableResult(
        asset_key=["a"],
        outcome="failed",
        failure_kind="transient",
        error="lock timeout on warehouse.duckdb",
        metadata={"drift": ["add_column c DOUBLE"] * 1000},
    )
    decoded = decode_result(encode_result(result))
    assert decoded.error == "lock timeout on warehouse.duckdb"
    assert decoded.metadata.get("truncated") is True


def test_every_kind_has_its_own_exit_code() -> None:
    assert exit_code_for(None) == 0
    codes = [exit_code_for(k) for k in PRODUCED_KINDS]
    assert sorted(codes) == list(range(10, 17))
    assert all(KIND_BY_EXIT_CODE[exit_code_for(k)] is k for k in PRODUCED_KINDS)
    assert exit_code_for(FailureKind.COMPILE_ERROR) == EXIT_CODE_BY_KIND[FailureKind.UNKNOWN]


secrets = st.text(
    st.characters(codec="utf-8", exclude_characters="*"), min_size=6, max_size=60
).filter(lambda s: s.strip() == s and len(s.strip()) >= 6)


@settings(max_examples=150, deadline=None)
@given(secret=secrets, before=any_text, after=any_text, shape=st.sampled_from(range(5)))
def test_planted_secret_never_appears(secret: str, before: str, after: str, shape: int) -> None:
    planted = [
        secret,
        json.dumps(secret)[1:-1],
        json.dumps({"password": secret}),
        repr(secret),
        f"token={secret}&x=1",
    ][shape]
    redact = Redactor([secret])
    error = before + planted + after
    result = TableResult(
        asset_key=["duckdb", planted],
        outcome="failed",
        failure_kind="auth-failed",
        error=redact(error),
        metadata={"k": redact(planted)},
    )
    text = encode_result(result).decode("ascii")
    decoded = json.loads(text)
    assert secret not in json.dumps(decoded["error"], ensure_ascii=False)
    assert secret not in decoded["metadata"]["k"]
    assert MASK in redact(error)


def test_multi_line_private_key_is_redacted_line_by_line() -> None:
    pem = (
        "-----BEGIN PRIVATE KEY-----\n"
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
        "VJTUt9Us8cKjMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
        "-----END PRIVATE KEY-----\n"
    )
    sa = json.dumps({"type": "service_account", "private_key": pem, "client_email": "a@b"})
    redact = Redactor([sa])
    line = pem.splitlines()[2]
    assert line not in redact(f"bad key material: {line}")
    assert json.dumps(pem)[1:-1] not in redact(f"payload {json.dumps(pem)}")
    assert "a@b" in redact("client a@b")  # not secret: left readable


@pytest.mark.parametrize("secret", ["hunter2-password", "ünïcødé-sëcret"])
def test_encoded_shapes_are_redacted(secret: str) -> None:
    import base64
    from urllib.parse import quote

    redact = Redactor([secret])
    for shape in (
        secret,
        json.dumps(secret)[1:-1],
        quote(secret, safe=""),
        base64.b64encode(secret.encode()).decode(),
    ):
        assert shape not in redact(f"<<{shape}>>")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    secret=st.text(
        st.characters(codec="utf-8", categories=["L", "N", "P", "S"], exclude_characters="*"),
        min_size=8,
        max_size=40,
    )
)
def test_secret_planted_in_a_real_error_stays_out_of_result_and_log(secret: str) -> None:
    """The runner in-process on a real DuckDB file: the missing table is named after the
    secret, so DuckDB's own error message carries it; neither the result nor the log may."""
    import contextlib
    import io
    import tempfile
    from pathlib import Path

    import duckdb

    from rocky_runner.main import run

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "w.duckdb"
        duckdb.connect(str(db)).close()
        doc = {
            "asset_key": ["duckdb", secret],
            "source": {"schema": "main", "table": secret},
            "target": {"schema": "staging", "table": "t"},
            "adapter": {"type": "duckdb", "duckdb": {"path": str(db)}},
        }
        result_path = Path(tmp) / "out" / "result.json"
        log = io.StringIO()
        with contextlib.redirect_stderr(log):
            code = run(
                {
                    "ROCKY_TASK": json.dumps(doc),
                    "ROCKY_RESULT_PATH": str(result_path),
                    "ROCKY_DATABRICKS_TOKEN": secret,
                }
            )
        raw = result_path.read_bytes()
    assert code == 15
    decoded = json.loads(raw)
    assert decoded["failure_kind"] == "not-found"
    assert secret not in json.dumps(decoded, ensure_ascii=False)
    assert json.dumps(secret)[1:-1] not in raw.decode("ascii")
    assert secret not in log.getvalue()
    assert "***" in decoded["error"]
