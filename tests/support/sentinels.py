"""Sentinel secrets and the echoing fakes they are sent to (issue 12).

Shared by the e2e sentinel test (operator, runner pods, real kube-apiserver) and the
local one (``rocky-operator local``): the awkward secrets, one RockyRun spec per
credential field and failure point, and :func:`echo_fakes`, the loopback fakes that
echo each credential back in their refusal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from fakes.bigquery import bigquery_server, service_account_info  # noqa: E402
from fakes.databricks import CA_FILE, databricks_echo_warehouse  # noqa: E402
from fakes.http import RunningServer  # noqa: E402
from fakes.snowflake import snowflake_echo_stub  # noqa: E402
from rocky_runner import contract  # noqa: E402

SECRET_NAME = "sentinels"


def long_secret(seed: str, size: int) -> str:
    """An awkward secret of exactly ``size`` characters: ``seed``, then pieces of two
    letters outside hex (a uid or hash cannot match them by chance) and a seed character."""
    letters = "ghijklmnopqrstuvwxyz"
    out, i = seed, 0
    while len(out) < size:
        out += letters[i % 20] + letters[i // 20 % 20] + seed[i % len(seed)]
        i += 1
    return out[:size]


def pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


#: Sentinels by Secret key. Databricks tokens travel in an HTTP header, which carries
#: latin-1 only, so theirs stay within it; the others use any unicode.
SENTINELS: dict[str, str] = {
    "sf-password-discovery": "Sf'pw\"dis\\cövery-☃-日本-\tEND",
    "sf-password-copy": long_secret("sF'pässwd\"\\cp-✓-", 200),
    "sf-bad-key": "not-a-pem: k'e\"y\\-ключ-☃-QXZWVK",
    "sf-pem-key": pem(),
    "dbx-token-discovery": long_secret("dapi'tøken\"dsc\\vry-ßé-", 200),
    "dbx-token-copy": "d'é\\\"ß",  # 6 characters
    "bq-kid-discovery": long_secret("kïd'dis\"c\\-☃-", 120),
    "bq-kid-copy": "kid'cöpy\"\\-✓-QZXJV-123",
    "bq-pem-discovery": pem(),
    "bq-pem-copy": pem(),
}


#: Text of each adapter's echoing refusal that must reach the run's status.
ECHOED = {
    "sf": "Incorrect username or password was specified. Request:",
    "dbx": "Invalid access token: Bearer",
    "bq": "Invalid JWT Signature for key",
    "sf-bad-key": "is not an unencrypted PEM private key",
}


def ref(key: str) -> dict[str, str]:
    return {"name": SECRET_NAME, "key": key}


def spec(adapter: dict[str, Any], **runner: Any) -> dict[str, Any]:
    return {
        "adapter": adapter,
        "source": {"schemaPattern": {"prefix": "src__", "separator": "__",
                                     "components": ["tenant"]}},
        "target": {"catalogTemplate": "tgt", "schemaTemplate": "stg_{tenant}"},
        "concurrency": 2,
        "runner": {"activeDeadlineSeconds": 240, **runner},
    }  # fmt: skip


@contextmanager
def echo_fakes() -> Iterator[dict[str, Any]]:
    """The echoing fakes, one per run: discovery refused (0 logins pass) or the copy
    refused (the discovery pod's login passes, the copy pod's is echoed)."""
    with ExitStack() as stack:
        found: dict[str, Any] = {}
        for mode, passes in (("discovery", 0), ("copy", 1)):
            found[f"sf-{mode}"] = stack.enter_context(
                snowflake_echo_stub(tables={"SRC__ACME": ["ORDERS"]}, logins_before_echo=passes)
            )
            dbx, service = stack.enter_context(databricks_echo_warehouse(passes))
            service.sql(
                "ATTACH ':memory:' AS raw; CREATE SCHEMA raw.src__acme; "
                "CREATE TABLE raw.src__acme.orders (id INT)"
            )
            found[f"dbx-{mode}"] = dbx
            bq, bq_service = stack.enter_context(bigquery_server("rocky-test"))
            bq_service.sql(
                'CREATE SCHEMA "rocky-test".src__acme; '
                'CREATE TABLE "rocky-test".src__acme.orders (id BIGINT)'
            )
            bq_service.grants_before_echo = passes
            found[f"bq-{mode}"] = bq
        found["sf-keys"] = stack.enter_context(snowflake_echo_stub(tables={}))
        yield found


def run_specs(fakes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """RockyRun specs by name: every credential field of every remote adapter."""
    runs: dict[str, dict[str, Any]] = {}
    for mode in ("discovery", "copy"):
        sf: RunningServer = fakes[f"sf-{mode}"]
        runs[f"sf-password-{mode}"] = spec({"type": "snowflake", "snowflake": {
            "account": "acct", "user": "etl", "database": "DB", "host": "127.0.0.1",
            "port": sf.port, "protocol": "http",
            "passwordSecretRef": ref(f"sf-password-{mode}")}})  # fmt: skip
        dbx: RunningServer = fakes[f"dbx-{mode}"]
        runs[f"dbx-{mode}"] = spec(
            {"type": "databricks", "databricks": {
                "host": "127.0.0.1", "port": dbx.port, "httpPath": "/sql/1.0/warehouses/w",
                "catalog": "raw", "tokenSecretRef": ref(f"dbx-token-{mode}")}},
            env=[{"name": "SSL_CERT_FILE", "value": CA_FILE}],
        )  # fmt: skip
        bq: RunningServer = fakes[f"bq-{mode}"]
        runs[f"bq-{mode}"] = spec({"type": "bigquery", "bigquery": {
            "project": "rocky-test", "apiEndpoint": bq.url,
            "credentialsSecretRef": ref(f"bq-credentials-{mode}")}})  # fmt: skip
    keys: RunningServer = fakes["sf-keys"]
    for name, key in (("sf-bad-key", "sf-bad-key"), ("sf-pem-key", "sf-pem-key")):
        runs[name] = spec({"type": "snowflake", "snowflake": {
            "account": "acct", "user": "etl", "database": "DB", "host": "127.0.0.1",
            "port": keys.port, "protocol": "http", "privateKeySecretRef": ref(key)}})  # fmt: skip
    return runs


def secret_data(fakes: dict[str, Any]) -> dict[str, str]:
    data = dict(SENTINELS)
    for mode in ("discovery", "copy"):
        info = service_account_info(f"{fakes[f'bq-{mode}'].url}/token")
        info["private_key_id"] = SENTINELS[f"bq-kid-{mode}"]
        info["private_key"] = SENTINELS[f"bq-pem-{mode}"]
        data[f"bq-credentials-{mode}"] = json.dumps(info)
    return data


#: The runner environment variable each Secret key of :func:`secret_data` feeds.
ENV_OF_KEY = {
    "sf-password-discovery": contract.ENV_SNOWFLAKE_PASSWORD,
    "sf-password-copy": contract.ENV_SNOWFLAKE_PASSWORD,
    "sf-bad-key": contract.ENV_SNOWFLAKE_PRIVATE_KEY,
    "sf-pem-key": contract.ENV_SNOWFLAKE_PRIVATE_KEY,
    "dbx-token-discovery": contract.ENV_DATABRICKS_TOKEN,
    "dbx-token-copy": contract.ENV_DATABRICKS_TOKEN,
    "bq-credentials-discovery": contract.ENV_BIGQUERY_CREDENTIALS,
    "bq-credentials-copy": contract.ENV_BIGQUERY_CREDENTIALS,
}


def credential_env(run_spec: dict[str, Any], data: dict[str, str]) -> dict[str, str]:
    """The credential variables a run's runner gets, resolved from ``data`` (what a
    pod's ``secretKeyRef`` would give it), for running without a cluster."""
    env: dict[str, str] = {}
    block = run_spec["adapter"][run_spec["adapter"]["type"]]
    for field, value in block.items():
        if field.endswith("SecretRef"):
            env[ENV_OF_KEY[value["key"]]] = data[value["key"]]
    return env
