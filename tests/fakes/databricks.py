"""Databricks fakes: a TCLIService over HTTPS, built from the connector's own Thrift classes.

The databricks-sql-connector speaks Thrift (``TCLIService``, binary protocol) in
HTTP POST bodies. :class:`FakeWarehouse` implements the service with the
connector's generated ``TCLIService.Processor`` and answers each statement by
running it on an in-memory DuckDB after transpiling it from the Databricks dialect
with sqlglot, so the adapter's real statements run end to end. Results go back as
a column-based row set (the format a SQL warehouse uses without Arrow), DML answers
carry ``num_affected_rows`` / ``num_inserted_rows`` as Databricks' do, and a
failing statement ends in ``ERROR_STATE`` with Databricks' message format
(``[ERROR_CLASS] ... SQLSTATE: xxxxx``), the way a SQL warehouse reports it.

HTTP failures (401, 403, 404, 429, 503, stalls) come from a plain reply handler on
the same kind of HTTPS server (:func:`fakes.http.serve`); :func:`databricks_echo_stub`
refuses every request with 401 and echoes the ``Authorization`` header it got (the token)
in the error headers the connector reports and in a JSON body.
"""

from __future__ import annotations

import datetime
import decimal
import os
import ssl
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import duckdb
import sqlglot
import sqlglot.errors
import trustme
from databricks.sql.thrift_api.TCLIService import TCLIService, ttypes
from thrift.protocol import TBinaryProtocol
from thrift.transport import TTransport

from fakes.http import Reply, Request, RunningServer, serve

T = ttypes


@dataclass
class StatementError(Exception):
    """Make a statement fail the way a SQL warehouse reports it."""

    error_class: str
    message: str
    sqlstate: str

    def display(self) -> str:
        return f"[{self.error_class}] {self.message} SQLSTATE: {self.sqlstate}"


#: DuckDB errors -> Databricks error classes for the statements the adapter sends.
def _databricks_error(exc: duckdb.Error) -> StatementError:
    text = str(exc).splitlines()[0]
    if isinstance(exc, duckdb.CatalogException):
        if "Schema with name" in text:
            return StatementError("SCHEMA_NOT_FOUND", text, "42704")
        return StatementError("TABLE_OR_VIEW_NOT_FOUND", text, "42P01")
    if isinstance(exc, duckdb.BinderException):
        return StatementError("UNRESOLVED_COLUMN.WITH_SUGGESTION", text, "42703")
    if isinstance(exc, duckdb.ParserException):
        return StatementError("PARSE_SYNTAX_ERROR", text, "42601")
    if isinstance(exc, duckdb.ConversionException):
        return StatementError("CAST_INVALID_INPUT", text, "22018")
    return StatementError("INTERNAL_ERROR", text, "XX000")


#: One throw-away CA per test process; clients trust it through ``CA_FILE``.
_CA = trustme.CA()
_CA_DIR = tempfile.mkdtemp(prefix="rocky-fake-ca-")
CA_FILE = os.path.join(_CA_DIR, "ca.pem")
_CA.cert_pem.write_to_path(CA_FILE)


def tls_context() -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 signed by the fake CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _CA.issue_cert("127.0.0.1").configure_cert(context)
    return context


def _handle() -> T.THandleIdentifier:
    return T.THandleIdentifier(guid=uuid.uuid4().bytes, secret=uuid.uuid4().bytes)


def _ok() -> T.TStatus:
    return T.TStatus(statusCode=T.TStatusCode.SUCCESS_STATUS)


def _type_id(values: list[Any]) -> int:
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, bool):
        return T.TTypeId.BOOLEAN_TYPE
    if isinstance(sample, int):
        return T.TTypeId.BIGINT_TYPE
    if isinstance(sample, float):
        return T.TTypeId.DOUBLE_TYPE
    return T.TTypeId.STRING_TYPE


def _nulls(values: list[Any]) -> bytes:
    bits = bytearray((len(values) + 7) // 8)
    for i, v in enumerate(values):
        if v is None:
            bits[i // 8] |= 1 << (i % 8)
    return bytes(bits)


def _text(value: Any) -> str:
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    return str(value)


def _column(type_id: int, values: list[Any]) -> T.TColumn:
    nulls = _nulls(values)
    if type_id == T.TTypeId.BOOLEAN_TYPE:
        return T.TColumn(boolVal=T.TBoolColumn([bool(v) for v in values], nulls))
    if type_id == T.TTypeId.BIGINT_TYPE:
        return T.TColumn(i64Val=T.TI64Column([int(v or 0) for v in values], nulls))
    if type_id == T.TTypeId.DOUBLE_TYPE:
        return T.TColumn(doubleVal=T.TDoubleColumn([float(v or 0) for v in values], nulls))
    return T.TColumn(
        stringVal=T.TStringColumn(["" if v is None else _text(v) for v in values], nulls)
    )


class FakeWarehouse:
    """The TCLIService handler: sessions, statements on DuckDB, results, errors."""

    def __init__(self) -> None:
        self.db = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False})
        self.lock = threading.Lock()
        self.statements: list[str] = []
        #: Statements containing this text fail with the given error instead of running.
        self.fail_on: dict[str, StatementError] = {}
        #: Statements containing this text get a TStatus ERROR_STATUS (no operation at all).
        self.reject_on: dict[str, str] = {}
        self._results: dict[bytes, T.TFetchResultsResp] = {}

    # -- helpers for tests --

    def sql(self, statement: str) -> list[tuple[Any, ...]]:
        with self.lock:
            return self.db.execute(statement).fetchall()

    # -- TCLIService --

    def OpenSession(self, req: T.TOpenSessionReq) -> T.TOpenSessionResp:  # noqa: N802
        return T.TOpenSessionResp(
            status=_ok(),
            serverProtocolVersion=T.TProtocolVersion.SPARK_CLI_SERVICE_PROTOCOL_V8,
            sessionHandle=T.TSessionHandle(sessionId=_handle()),
            canUseMultipleCatalogs=True,
        )

    def CloseSession(self, req: T.TCloseSessionReq) -> T.TCloseSessionResp:  # noqa: N802
        return T.TCloseSessionResp(status=_ok())

    def _run(self, statement: str) -> tuple[list[str], list[list[Any]]]:
        tree = sqlglot.parse_one(statement, read="databricks")
        for table in tree.find_all(sqlglot.exp.Table):
            # Databricks scopes information_schema per catalog; DuckDB has one for all
            # catalogs (the adapter filters by catalog name in its WHERE clause).
            if table.db.lower() == "information_schema" and table.args.get("catalog"):
                table.set("catalog", None)
        duck_sql = tree.sql(dialect="duckdb")
        with self.lock:
            cursor = self.db.execute(duck_sql)
            names = [d[0] for d in cursor.description or []]
            rows = cursor.fetchall() if cursor.description else []
        if names == ["Count"]:  # DML: answer like Databricks does
            count = rows[0][0] if rows else 0
            return ["num_affected_rows", "num_inserted_rows"], [[count, count]]
        return names, [list(r) for r in rows]

    def ExecuteStatement(self, req: T.TExecuteStatementReq) -> T.TExecuteStatementResp:  # noqa: N802
        statement = req.statement
        self.statements.append(statement)
        for marker, message in self.reject_on.items():
            if marker in statement:
                return T.TExecuteStatementResp(
                    status=T.TStatus(
                        statusCode=T.TStatusCode.ERROR_STATUS,
                        errorMessage=message,
                        sqlState="42000",
                    )
                )
        operation = T.TOperationHandle(
            operationId=_handle(),
            operationType=T.TOperationType.EXECUTE_STATEMENT,
            hasResultSet=True,
        )
        try:
            failure = next((e for m, e in self.fail_on.items() if m in statement), None)
            if failure is not None:
                raise failure
            try:
                names, rows = self._run(statement)
            except sqlglot.errors.ParseError as exc:
                first = str(exc).splitlines()[0]
                raise StatementError("PARSE_SYNTAX_ERROR", first, "42601") from exc
            except duckdb.Error as exc:
                raise _databricks_error(exc) from exc
        except StatementError as err:
            return T.TExecuteStatementResp(
                status=_ok(),
                operationHandle=operation,
                directResults=T.TSparkDirectResults(
                    operationStatus=T.TGetOperationStatusResp(
                        status=_ok(),
                        operationState=T.TOperationState.ERROR_STATE,
                        sqlState=err.sqlstate,
                        errorMessage=err.display(),
                        displayMessage=err.display(),
                    )
                ),
            )
        columns = [[r[i] for r in rows] for i in range(len(names))]
        types = [_type_id(c) for c in columns]
        schema = T.TTableSchema(
            columns=[
                T.TColumnDesc(
                    columnName=name,
                    typeDesc=T.TTypeDesc(
                        types=[T.TTypeEntry(primitiveEntry=T.TPrimitiveTypeEntry(type=type_id))]
                    ),
                    position=i + 1,
                )
                for i, (name, type_id) in enumerate(zip(names, types, strict=True))
            ]
        )
        metadata = T.TGetResultSetMetadataResp(
            status=_ok(), schema=schema, resultFormat=T.TSparkRowSetType.COLUMN_BASED_SET
        )
        row_set = T.TRowSet(
            startRowOffset=0,
            rows=[],
            columns=[_column(t, c) for t, c in zip(types, columns, strict=True)],
        )
        return T.TExecuteStatementResp(
            status=_ok(),
            operationHandle=operation,
            directResults=T.TSparkDirectResults(
                operationStatus=T.TGetOperationStatusResp(
                    status=_ok(), operationState=T.TOperationState.FINISHED_STATE
                ),
                resultSetMetadata=metadata,
                resultSet=T.TFetchResultsResp(status=_ok(), hasMoreRows=False, results=row_set),
                closeOperation=T.TCloseOperationResp(status=_ok()),
            ),
        )

    def GetOperationStatus(self, req: T.TGetOperationStatusReq) -> T.TGetOperationStatusResp:  # noqa: N802
        return T.TGetOperationStatusResp(
            status=_ok(), operationState=T.TOperationState.FINISHED_STATE
        )

    def CloseOperation(self, req: T.TCloseOperationReq) -> T.TCloseOperationResp:  # noqa: N802
        return T.TCloseOperationResp(status=_ok())

    def CancelOperation(self, req: T.TCancelOperationReq) -> T.TCancelOperationResp:  # noqa: N802
        return T.TCancelOperationResp(status=_ok())

    def FetchResults(self, req: T.TFetchResultsReq) -> T.TFetchResultsResp:  # noqa: N802
        return T.TFetchResultsResp(
            status=_ok(),
            hasMoreRows=False,
            results=T.TRowSet(startRowOffset=0, rows=[], columns=[]),
        )


def thrift_handler(service: FakeWarehouse) -> Callable[[Request], Reply]:
    """An HTTP handler that decodes a Thrift call, runs it on ``service``, encodes the answer."""
    processor = TCLIService.Processor(service)

    def handle(request: Request) -> Reply:
        inbound = TTransport.TMemoryBuffer(request.body)
        outbound = TTransport.TMemoryBuffer()
        processor.process(
            TBinaryProtocol.TBinaryProtocol(inbound), TBinaryProtocol.TBinaryProtocol(outbound)
        )
        return Reply(200, outbound.getvalue(), {"Content-Type": "application/x-thrift"})

    return handle


@contextmanager
def databricks_warehouse() -> Iterator[tuple[RunningServer, FakeWarehouse]]:
    """The fake SQL warehouse on an HTTPS port of 127.0.0.1."""
    service = FakeWarehouse()
    with serve(thrift_handler(service), tls=tls_context()) as server:
        yield server, service
    service.db.close()


@contextmanager
def databricks_http_stub(reply: Reply) -> Iterator[RunningServer]:
    """An HTTPS endpoint that answers every request with ``reply`` (HTTP failures)."""
    with serve(lambda _request: reply, tls=tls_context()) as server:
        yield server


def echo_token_refusal(request: Request) -> Reply:
    """HTTP 401 echoing the request's ``Authorization`` header: verbatim (latin-1, as
    HTTP carries it) in ``x-thriftserver-error-message``, which the connector puts in
    its error, URL-encoded in ``x-databricks-reason-phrase`` and JSON-escaped in the body."""
    auth = request.headers.get("authorization", "")
    try:
        auth.encode("latin-1")
        verbatim = auth
    except UnicodeEncodeError:
        verbatim = quote(auth)
    body = {"error_code": "INVALID_TOKEN", "message": f"Invalid access token: {auth}"}
    return Reply.json(
        body,
        status=401,
        **{
            "x-thriftserver-error-message": f"Invalid access token: {verbatim}",
            "x-databricks-reason-phrase": quote(f"Invalid access token {auth}"),
        },
    )


def _thrift_method(body: bytes) -> str:
    """The name of the Thrift call in a request body."""
    name, _type, _seq = TBinaryProtocol.TBinaryProtocol(
        TTransport.TMemoryBuffer(body)
    ).readMessageBegin()
    return str(name)


@contextmanager
def databricks_echo_warehouse(
    sessions_before_echo: int = 0,
) -> Iterator[tuple[RunningServer, FakeWarehouse]]:
    """The fake SQL warehouse whose first ``sessions_before_echo`` sessions open, and
    whose every later ``OpenSession`` is refused echoing its token
    (:func:`echo_token_refusal`): a discovery pod plans tables, their copies then fail."""
    service = FakeWarehouse()
    thrift = thrift_handler(service)
    opened = 0
    lock = threading.Lock()

    def handle(request: Request) -> Reply:
        nonlocal opened
        if _thrift_method(request.body) == "OpenSession":
            with lock:
                opened += 1
                refuse = opened > sessions_before_echo
            if refuse:
                return echo_token_refusal(request)
        return thrift(request)

    with serve(handle, tls=tls_context()) as server:
        yield server, service
    service.db.close()
