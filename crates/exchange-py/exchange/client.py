"""The connection to a coordinator and its typed calls."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import tomllib
from typing import Iterable, Iterator, Sequence

import grpc
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.ipc
from google.rpc import error_details_pb2, status_pb2

from .v1 import control_pb2 as pb
from .v1 import control_pb2_grpc as rpc

#: The largest message the coordinator sends (a lookup's rows, an audit page).
MAX_MESSAGE_BYTES = 256 << 20
#: Keys per ``KeyList`` message of a batch lookup (the coordinator's limit).
KEYS_PER_MESSAGE = 10_000

_STATUS = {
    pb.LOOKUP_STATUS_OK: "ok",
    pb.LOOKUP_STATUS_DENIED: "denied",
    pb.LOOKUP_STATUS_OFFLINE: "offline",
    pb.LOOKUP_STATUS_TIMED_OUT: "timed_out",
    pb.LOOKUP_STATUS_ERROR: "error",
}


class ExchangeError(Exception):
    """A refusal or failure, with the gRPC code's name (``PERMISSION_DENIED``,
    ``INVALID_ARGUMENT``, ...), the coordinator's message, which names what
    is wrong and how to fix it, and, for the exchange's own refusals over
    gRPC, the ``google.rpc.ErrorInfo`` reason (``GRANT_MISSING``,
    ``PURPOSE_REQUIRED``, ``FIELD_MASKED``, ...) to branch on."""

    def __init__(self, code: str, message: str, reason: str | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.reason = reason


def _reason_in(status_details: bytes) -> str | None:
    """The ``ErrorInfo.reason`` in an encoded ``google.rpc.Status``, if any."""
    try:
        details = status_pb2.Status.FromString(status_details).details
    except Exception:  # noqa: BLE001 - not a Status: no reason to give
        return None
    for detail in details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return None


def _reason(e: grpc.RpcError) -> str | None:
    """The ``ErrorInfo.reason`` in a status's details, if any."""
    for key, value in e.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return _reason_in(value)
    return None


def _error(e: Exception) -> ExchangeError:
    """The refusal a gRPC or Flight call raised, as an :class:`ExchangeError`."""
    if isinstance(e, grpc.RpcError):
        return ExchangeError(e.code().name, e.details() or "", _reason(e))
    text = str(e)
    kind = {
        flight.FlightUnauthorizedError: "PERMISSION_DENIED",
        flight.FlightUnauthenticatedError: "UNAUTHENTICATED",
        flight.FlightUnavailableError: "UNAVAILABLE",
        flight.FlightTimedOutError: "DEADLINE_EXCEEDED",
        pa.ArrowInvalid: "INVALID_ARGUMENT",
        pa.ArrowNotImplementedError: "UNIMPLEMENTED",
    }.get(type(e), "UNKNOWN")
    # pyarrow wraps the server's message: "Flight returned ... error, with
    # message: <message>. gRPC client debug context: ...".
    if "with message: " in text:
        text = text.split("with message: ", 1)[1]
    text = text.split(". gRPC client debug context")[0].split(". Detail:")[0]
    # Arrow's Flight client keeps the status details trailer as extra_info.
    extra = getattr(e, "extra_info", None)
    return ExchangeError(kind, text.strip(), _reason_in(extra) if extra else None)


@dataclasses.dataclass(frozen=True)
class Config:
    """``exchange.toml``: where the coordinator is and which certificate to use."""

    coordinator: str
    cert_dir: pathlib.Path
    cert_name: str = "client"
    user: str | None = None

    @staticmethod
    def default_path() -> pathlib.Path:
        env = os.environ.get("EXCHANGE_CONFIG")
        if env:
            return pathlib.Path(env)
        return pathlib.Path.home() / ".exchange" / "exchange.toml"

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "Config":
        path = pathlib.Path(path) if path is not None else cls.default_path()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ExchangeError(
                "CONFIG",
                f"{path}: cannot read the client config ({e.strerror}). Enrol with `exchange enroll`, "
                "or pass connect(config=...) / set EXCHANGE_CONFIG to an exchange.toml",
            ) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ExchangeError("CONFIG", f"{path}: {e}") from None
        unknown = set(data) - {"coordinator", "cert_dir", "cert_name", "user"}
        if unknown or "coordinator" not in data:
            raise ExchangeError(
                "CONFIG",
                f"{path}: expected `coordinator` and optionally `cert_dir`, `cert_name`, `user`; "
                f"unknown keys: {sorted(unknown)}",
            )
        cert_dir = pathlib.Path(data.get("cert_dir", "."))
        if not cert_dir.is_absolute():
            cert_dir = path.parent / cert_dir
        return cls(data["coordinator"], cert_dir, data.get("cert_name", "client"), data.get("user") or None)

    def read(self, name: str) -> bytes:
        file = self.cert_dir / name
        try:
            return file.read_bytes()
        except OSError as e:
            raise ExchangeError("CONFIG", f"{file}: cannot read ({e.strerror}); is cert_dir right?") from None


def connect(config: str | os.PathLike | Config | None = None, *, user: str | None = None) -> "Exchange":
    """Connects with the certificate ``exchange.toml`` names.

    ``config`` is the file's path (default: ``$EXCHANGE_CONFIG``, else
    ``~/.exchange/exchange.toml``) or a :class:`Config`. ``user`` overrides
    the config's ``user``: the person asking, recorded in every audit record.
    """
    if not isinstance(config, Config):
        config = Config.load(config)
    return Exchange(config, user if user is not None else (config.user or ""))


@dataclasses.dataclass
class LookupAnswer:
    """How one dataset answered a lookup."""

    dataset: str
    department: str
    key_field: str
    #: ``ok``, ``denied``, ``offline``, ``timed_out`` or ``error``.
    status: str
    #: Why, when the status is not ``ok``.
    detail: str
    rows: int
    #: The rows (masked as the grant says), when the status is ``ok``.
    table: pa.Table | None
    elapsed_ms: int


@dataclasses.dataclass
class LookupResult:
    key_type: str
    key: str
    #: Sorted by department, then dataset.
    answers: list[LookupAnswer]
    elapsed_ms: int

    def ok(self) -> list[LookupAnswer]:
        return [a for a in self.answers if a.status == "ok"]


@dataclasses.dataclass
class BatchResult:
    #: One table per dataset, with the rows every key found.
    tables: dict[str, pa.Table]
    #: Keys looked up (after removing repeats).
    keys: int
    #: ``(dataset, keys, status, detail)`` of every chunk that did not answer.
    failures: list[tuple[str, int, str, str]]
    #: ``(key, reason)`` of keys that failed their check characters.
    rejected: list[tuple[str, str]]


def _table(ipc: bytes) -> pa.Table:
    return pyarrow.ipc.open_stream(pa.py_buffer(ipc)).read_all()


def to_pandas(table: pa.Table):
    """A pandas DataFrame with nullable dtypes (``Int64``, ``string``,
    ``boolean``...), so a missing value stays missing instead of turning an
    integer column into floats."""
    import pandas as pd

    nullable = {
        pa.int8(): pd.Int8Dtype(),
        pa.int16(): pd.Int16Dtype(),
        pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.uint8(): pd.UInt8Dtype(),
        pa.uint16(): pd.UInt16Dtype(),
        pa.uint32(): pd.UInt32Dtype(),
        pa.uint64(): pd.UInt64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.float32(): pd.Float32Dtype(),
        pa.float64(): pd.Float64Dtype(),
        pa.string(): pd.StringDtype(),
        pa.large_string(): pd.StringDtype(),
    }
    return table.to_pandas(types_mapper=nullable.get)


class Exchange:
    """A mutual-TLS connection to the coordinator, as the certificate's
    department. Use :func:`connect` to make one; close it when done (or use
    it as a context manager)."""

    def __init__(self, config: Config, user: str):
        self.config = config
        self.user = user
        ca, cert, key = (config.read(n) for n in ("ca.crt", f"{config.cert_name}.crt", f"{config.cert_name}.key"))
        credentials = grpc.ssl_channel_credentials(ca, key, cert)
        self._channel = grpc.secure_channel(
            config.coordinator,
            credentials,
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)],
        )
        self._flight = flight.FlightClient(
            f"grpc+tls://{config.coordinator}", tls_root_certs=ca, cert_chain=cert, private_key=key
        )
        self.catalog = Catalog(rpc.CatalogStub(self._channel))
        self.access = Access(rpc.AccessStub(self._channel), user)
        self.audit = Audit(rpc.AuditStub(self._channel))
        self._lookups = rpc.LookupsStub(self._channel)
        self._registry = rpc.RegistryStub(self._channel)

    def __enter__(self) -> "Exchange":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()
        self._flight.close()

    def whoami(self) -> pb.WhoAmIResponse:
        """The department and role the coordinator sees in this certificate."""
        return _call(self._registry.WhoAmI, pb.WhoAmIRequest())

    def query(
        self,
        dataset: str,
        *,
        purpose: str,
        fields: Sequence[str] = (),
        where: str = "",
        limit: int | None = None,
    ) -> pa.Table:
        """Runs a query under this department's grant and returns its rows,
        masked as the grant says. ``fields`` empty: every granted field.
        ``where`` uses the exchange's filter language
        (``person_id = '...' AND rent > 1000``)."""
        command = {"dataset": dataset, "fields": list(fields), "where": where, "purpose": purpose, "user": self.user}
        if limit is not None:
            command["limit"] = limit
        ticket = flight.Ticket(json.dumps(command, ensure_ascii=False).encode())
        try:
            return self._flight.do_get(ticket).read_all()
        except (flight.FlightError, pa.ArrowException) as e:
            raise _error(e) from None

    def lookup(
        self,
        key_type: str,
        key: str,
        *,
        purpose: str,
        deadline_ms: int = 3000,
        datasets: Sequence[str] = (),
    ) -> LookupResult:
        """One person (``person_id``) or company (``org_code``) across every
        dataset this department holds a grant on that carries the key, each
        answer with its status, within ``deadline_ms``."""
        request = pb.LookupRequest(
            key_type=key_type, key=key, purpose=purpose, user=self.user, deadline_ms=deadline_ms, datasets=datasets
        )
        response = _call(self._lookups.Lookup, request, timeout=deadline_ms / 1000 + 5)
        answers = [
            LookupAnswer(
                dataset=a.target.dataset,
                department=a.target.department,
                key_field=a.target.key_field,
                status=_STATUS.get(a.status, "error"),
                detail=a.detail,
                rows=a.rows,
                table=_table(a.arrow_ipc) if a.arrow_ipc else None,
                elapsed_ms=a.elapsed_ms,
            )
            for a in response.answers
        ]
        return LookupResult(response.key_type, response.key, answers, response.elapsed_ms)

    def batch_lookup(
        self,
        key_type: str,
        keys: Iterable[str],
        *,
        purpose: str,
        datasets: Sequence[str] = (),
        chunk_size: int = 1000,
        parallel: int = 6,
    ) -> BatchResult:
        """Looks many keys up at once: they stream to the coordinator, which
        reads them in chunks as ordinary audited ``IN`` queries. Repeated
        keys are looked up once."""
        counted = [0]
        start = pb.BatchLookupStart(
            key_type=key_type,
            purpose=purpose,
            user=self.user,
            datasets=datasets,
            chunk_size=chunk_size,
            parallel=parallel,
        )

        def requests() -> Iterator[pb.BatchLookupRequest]:
            yield pb.BatchLookupRequest(start=start)
            seen: set[str] = set()
            chunk: list[str] = []
            for key in keys:
                key = str(key).strip().upper()
                if not key or key in seen:
                    continue
                seen.add(key)
                chunk.append(key)
                if len(chunk) == KEYS_PER_MESSAGE:
                    yield pb.BatchLookupRequest(keys=pb.KeyList(keys=chunk))
                    chunk = []
            if chunk:
                yield pb.BatchLookupRequest(keys=pb.KeyList(keys=chunk))
            counted[0] = len(seen)

        targets: list[pb.LookupTarget] = []
        batches: dict[int, list[pa.RecordBatch]] = {}
        schemas: dict[int, pa.Schema] = {}
        failures: list[tuple[str, int, str, str]] = []
        rejected: list[tuple[str, str]] = []
        try:
            for event in self._lookups.BatchLookup(requests()):
                kind = event.WhichOneof("event")
                if kind == "targets":
                    targets = list(event.targets.targets)
                elif kind == "rows":
                    table = _table(event.rows.arrow_ipc)
                    schemas.setdefault(event.rows.target, table.schema)
                    batches.setdefault(event.rows.target, []).extend(table.to_batches())
                elif kind == "chunk_done" and event.chunk_done.status != pb.LOOKUP_STATUS_OK:
                    done = event.chunk_done
                    failures.append(
                        (targets[done.target].dataset, done.keys, _STATUS.get(done.status, "error"), done.detail)
                    )
                elif kind == "rejected":
                    rejected.append((event.rejected.key, event.rejected.reason))
        except grpc.RpcError as e:
            raise _error(e) from None
        tables = {
            t.dataset: pa.Table.from_batches(batches.get(i, []), schema=schemas.get(i, pa.schema([])))
            for i, t in enumerate(targets)
        }
        return BatchResult(tables, counted[0], failures, rejected)

    def report(self, kind: str = "departments", *, since_unix: int = 0, until_unix: int = 0) -> pa.Table:
        """The federation's performance report (``departments``, ``datasets``
        or ``daily``) as a table with the column types the coordinator
        declares (integers, numbers, text; empty figures are null)."""
        response = _call(self.audit._stub.Report, pb.ReportRequest(kind=kind, since_unix=since_unix, until_unix=until_unix))
        arrow_type = {
            pb.REPORT_COLUMN_TYPE_INTEGER: pa.int64(),
            pb.REPORT_COLUMN_TYPE_NUMBER: pa.float64(),
        }
        columns = {}
        for i, name in enumerate(response.columns):
            cells = [row.values[i] for row in response.rows]
            values = [getattr(c, c.WhichOneof("value")) if c.WhichOneof("value") else None for c in cells]
            columns[name] = pa.array(values, arrow_type.get(response.column_types[i], pa.string()))
        return pa.table(columns)


def _call(method, request, timeout: float = 30):
    try:
        return method(request, timeout=timeout)
    except grpc.RpcError as e:
        raise _error(e) from None


def _all_pages(method, request, items: str) -> list:
    """Every item of a paged list RPC, a page of 1000 at a time."""
    found: list = []
    request.page_size = 1000
    while True:
        answer = _call(method, request)
        found.extend(getattr(answer, items))
        if not answer.next_page_token:
            return found
        request.page_token = answer.next_page_token


class Catalog:
    """The federation's catalog of datasets."""

    def __init__(self, stub: rpc.CatalogStub):
        self._stub = stub

    def search(
        self,
        text: str = "",
        *,
        department: str = "",
        sharing: str = "",
        key_type: str = "",
        limit: int = 50,
    ) -> list[pb.Dataset]:
        """Datasets whose title, description, tags or fields match ``text``
        (Chinese or English), best first."""
        request = pb.SearchRequest(text=text, department=department, sharing=sharing, key_type=key_type, limit=limit)
        return [hit.dataset for hit in _call(self._stub.Search, request).hits]

    def get(self, dataset: str) -> pb.Dataset:
        return _call(self._stub.GetDataset, pb.GetDatasetRequest(id=dataset)).dataset


class Access:
    """Access requests and grants."""

    def __init__(self, stub: rpc.AccessStub, user: str):
        self._stub = stub
        self._user = user

    def request(
        self,
        dataset: str,
        *,
        purpose: str,
        fields: Sequence[str] = (),
        basis: str = "",
        until: str = "",
    ) -> pb.AccessRequestRecord:
        """Asks the owner for access (``fields`` empty: every shared field).
        Asking again while the same request is open returns that request."""
        request = pb.AccessRequest(
            dataset=dataset, fields=fields, purpose=purpose, basis=basis, until=until, user=self._user
        )
        return _call(self._stub.RequestAccess, request)

    def requests(self) -> list[pb.AccessRequestRecord]:
        """Requests this department made or received, newest first."""
        return _all_pages(self._stub.ListRequests, pb.ListRequestsRequest(), "requests")

    def grants(self) -> list[pb.Grant]:
        """Grants this department holds or gave."""
        return _all_pages(self._stub.ListGrants, pb.ListGrantsRequest(), "grants")


class Audit:
    """Who used which data, and the federation's reports."""

    def __init__(self, stub: rpc.AuditStub):
        self._stub = stub

    def log(
        self,
        *,
        dataset: str = "",
        consumer: str = "",
        purpose: str = "",
        owner: str = "",
        since_unix: int = 0,
        until_unix: int = 0,
        limit: int = 1000,
    ) -> pa.Table:
        """Query records this certificate may see (its own department's as
        consumer or owner; the bureau sees all), newest first, as a table."""
        request = pb.AuditLogRequest(
            dataset=dataset,
            consumer=consumer,
            purpose=purpose,
            owner=owner,
            since_unix=since_unix,
            until_unix=until_unix,
            limit=limit,
        )
        rows = _call(self._stub.Log, request).rows
        return pa.table(
            {
                "time": pa.array([r.time.ToMilliseconds() for r in rows], pa.timestamp("ms", tz="UTC")),
                "query_id": pa.array([r.query_id for r in rows], pa.string()),
                "consumer": pa.array([r.consumer for r in rows], pa.string()),
                "user": pa.array([r.user for r in rows], pa.string()),
                "purpose": pa.array([r.purpose for r in rows], pa.string()),
                "dataset": pa.array([r.dataset for r in rows], pa.string()),
                "fields": pa.array([list(r.fields) for r in rows], pa.list_(pa.string())),
                "allowed": pa.array([r.allowed for r in rows], pa.bool_()),
                "rule": pa.array([r.rule for r in rows], pa.string()),
                "reason": pa.array([r.reason for r in rows], pa.string()),
                "rows": pa.array([r.rows for r in rows], pa.uint64()),
                "duration_ms": pa.array([r.duration_ms for r in rows], pa.uint64()),
                "status": pa.array([r.status for r in rows], pa.string()),
                "grant_id": pa.array([r.grant_id for r in rows], pa.string()),
            }
        )
