"""The demo warehouse: a DuckDB file with Fivetran-style source schemas and planted problems.

Source schemas follow ``src__<tenant>__<region>__<source>``. The demo manifest
(``rockyrun.yaml`` beside this module) selects ``tenant=acme`` and writes each
table to the catalog ``{tenant}_{source}``, i.e. the DuckDB file
``acme_<source>.duckdb`` next to the warehouse. Four problems are planted, each
failing through the real DuckDB engine with a different failure_kind:

- ``acme/us_west/shopify/refunds``: **query-rejected**. DuckDB's CatalogException:
  the target name ``acme_shopify.staging__us_west.refunds`` is a view (a BI tool's).
- ``acme/us_west/zendesk/tickets``: **connection-failed**. IOException: the target
  file ``acme_zendesk.duckdb`` is not a DuckDB database (retried once, fails again).
- ``acme/us_east/hubspot/contacts``: **transient**. IOException "Could not set lock":
  another writer holds ``acme_hubspot.duckdb`` past ``lockTimeoutSeconds``.
- ``acme/eu/stripe/disputes``: **quota-exceeded**. OutOfMemoryException: a 40 MiB
  value does not fit ``memoryLimit: 32MB``.

The "other writer" of the transient case is the process that built the warehouse:
:func:`hold_lock` holds the file while the run goes on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb

WAREHOUSE_FILE = "warehouse.duckdb"
#: Where the demo manifest's runner pods see the warehouse volume.
POD_DATA_DIR = "/data"

#: source schema -> tables (columns are generated from the source type)
SCHEMAS: dict[str, tuple[str, ...]] = {
    "src__acme__us_west__shopify": ("customers", "orders", "products", "refunds"),
    "src__acme__eu__shopify": ("customers", "orders", "products"),
    "src__acme__eu__stripe": ("charges", "customers", "disputes", "payouts"),
    "src__acme__us_west__stripe": ("charges", "customers"),
    "src__acme__us_east__hubspot": ("contacts",),
    "src__acme__us_west__zendesk": ("tickets",),
    # Not selected by the manifest's filter (tenant=acme):
    "src__globex__us_west__hubspot": ("companies", "contacts", "deals"),
    "src__globex__eu__shopify": ("customers", "orders"),
}
#: Schemas that do not match the pattern at all (never discovered).
OTHER_SCHEMAS: dict[str, tuple[str, ...]] = {
    "analytics": ("daily_revenue",),
    "src__legacy": ("orders",),
}


@dataclass(frozen=True)
class PlantedProblem:
    """One table that fails on purpose, and how."""

    asset_key: tuple[str, ...]
    failure_kind: str
    cause: str


PLANTED: tuple[PlantedProblem, ...] = (
    PlantedProblem(
        ("duckdb", "acme", "us_west", "shopify", "refunds"),
        "query-rejected",
        "the target name acme_shopify.staging__us_west.refunds is a view",
    ),
    PlantedProblem(
        ("duckdb", "acme", "us_west", "zendesk", "tickets"),
        "connection-failed",
        "the target file acme_zendesk.duckdb is not a DuckDB database",
    ),
    PlantedProblem(
        ("duckdb", "acme", "us_east", "hubspot", "contacts"),
        "transient",
        "another writer holds the lock of the target file acme_hubspot.duckdb",
    ),
    PlantedProblem(
        ("duckdb", "acme", "eu", "stripe", "disputes"),
        "quota-exceeded",
        "a 40 MiB evidence value does not fit the runners' memoryLimit of 32MB",
    ),
)

#: Size of the oversized value of the quota-exceeded table (DuckDB needs it in one
#: piece of memory, more than the manifest's memoryLimit allows).
BLOB_BYTES = 40 * 1024 * 1024
#: Files the builder owns in the work directory (removed when it rebuilds).
OWNED_FILES = (
    WAREHOUSE_FILE,
    "acme_shopify.duckdb",
    "acme_stripe.duckdb",
    "acme_hubspot.duckdb",
    "acme_zendesk.duckdb",
)

_COLUMNS: dict[str, str] = {
    "customers": "'customer ' || i AS name, 'c' || i || '@example.com' AS email",
    "orders": "i % 97 AS customer_id, round(i * 1.25, 2)::DECIMAL(12, 2) AS amount",
    "products": "'sku-' || i AS sku, (i % 50)::INTEGER AS stock",
    "refunds": "i * 3 AS order_id, round(i * 0.5, 2)::DECIMAL(12, 2) AS amount",
    "charges": "round(i * 2.5, 2)::DECIMAL(12, 2) AS amount, 'usd' AS currency",
    "payouts": "round(i * 100.0, 2)::DECIMAL(14, 2) AS amount, 'paid' AS status",
    "disputes": "i * 7 AS charge_id, 'needs_response' AS status, '' AS evidence",
    "contacts": "'contact ' || i AS name, i % 5 AS lifecycle_stage",
    "deals": "'deal ' || i AS name, i * 1000 AS value",
    "companies": "'company ' || i AS name, 'example' || i || '.com' AS domain",
    "tickets": "'ticket ' || i AS subject, if(i % 3 = 0, 'open', 'solved') AS status",
    "daily_revenue": "i AS day, i * 10 AS revenue",
}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _create_table(conn: duckdb.DuckDBPyConnection, schema: str, table: str, rows: int) -> None:
    conn.execute(
        f"CREATE TABLE {_ident(schema)}.{_ident(table)} AS "
        f"SELECT i AS id, {_COLUMNS[table]}, "
        "TIMESTAMP '2026-11-01 00:00:00' + to_minutes(i) AS _fivetran_synced "
        f"FROM range(1, {rows + 1}) AS r(i)"
    )


@dataclass(frozen=True)
class DemoWarehouse:
    """What was built, for the demo command and the tests."""

    directory: Path
    warehouse: Path
    tables: int
    schemas: int

    @property
    def locked_target(self) -> Path:
        return self.directory / "acme_hubspot.duckdb"


def build_warehouse(directory: Path) -> DemoWarehouse:
    """(Re)build the demo warehouse and its planted problems in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in OWNED_FILES:
        for path in (directory / name, directory / f"{name}.wal"):
            path.unlink(missing_ok=True)
    warehouse = directory / WAREHOUSE_FILE
    count = 0
    with contextlib.closing(duckdb.connect(str(warehouse))) as conn:
        for n, (schema, tables) in enumerate({**SCHEMAS, **OTHER_SCHEMAS}.items()):
            conn.execute(f"CREATE SCHEMA {_ident(schema)}")
            for table in tables:
                _create_table(conn, schema, table, rows=40 + 15 * n + len(table))
                count += 1
        # quota-exceeded: one dispute carries an evidence file far above the memory cap.
        conn.execute(
            "UPDATE src__acme__eu__stripe.disputes SET evidence = repeat('x', ?) WHERE id = 1",
            [BLOB_BYTES],
        )
        conn.execute("CHECKPOINT")
    # query-rejected: someone made a view where the refunds table should go.
    with contextlib.closing(duckdb.connect(str(directory / "acme_shopify.duckdb"))) as conn:
        conn.execute("CREATE SCHEMA staging__us_west")
        conn.execute(
            "CREATE VIEW staging__us_west.refunds AS SELECT 1 AS id, 'from the BI tool' AS note"
        )
    # connection-failed: a half-copied file that is not a DuckDB database.
    (directory / "acme_zendesk.duckdb").write_bytes(b"not a duckdb file\n" * 512)
    # transient: a valid target file, locked by hold_lock while the run goes on.
    with contextlib.closing(duckdb.connect(str(directory / "acme_hubspot.duckdb"))) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS staging__us_east")
    schemas = len(SCHEMAS) + len(OTHER_SCHEMAS)
    return DemoWarehouse(directory=directory, warehouse=warehouse, tables=count, schemas=schemas)


@contextlib.contextmanager
def hold_lock(path: Path) -> Iterator[None]:
    """Hold DuckDB's write lock on ``path`` (another writer, as far as runners can tell)."""
    conn = duckdb.connect(str(path))
    try:
        yield
    finally:
        conn.close()
