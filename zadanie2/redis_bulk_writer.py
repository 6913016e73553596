"""Bulk load of a final snapshot into Feast's Redis online store: the bytes Feast writes, column at a time.

Feast's materialization converts every value of every row to a ``ValueProto`` object in Python before
its Redis store serializes it again (~15 k pair rows/s on this machine: 18 minutes for the 16 M rows of a
20 M-event shop). This writer produces the same Redis hashes from whole columns:

* hash keys: Feast's ``serialize_entity_key(...) + project`` for int64 keys is fixed-width, so a key column
  is one uint8 matrix cut into rows (:meth:`EntityKeyEncoder.column_keys`, the service reader's encoder);
* fields: ``murmur3("<view>:<feature>")`` and ``_ts:<view>``, from Feast's own helper;
* values: int64 columns are converted by Feast's own ``python_values_to_proto_values`` once per distinct
  value; float32 values are ``0x35 + float32 little-endian`` (field 6, fixed32), NaN is Feast's empty
  value; lists are ``<field 14|16> <len> 0x0a <len> <packed varints | float32s>``, the varints of a
  whole column computed in numpy;
* the timestamp is Feast's ``Timestamp.FromDatetime`` bytes, once per distinct event time.

Every encoder is checked against Feast's own functions on sample values when it is built, and a test
compares every hash with what ``FeatureStore.materialize`` wrote. Rows are written like Feast's default
(de-duplicating) Redis write: a row whose stored ``_ts`` is not older is skipped. The feature view's
materialization interval is recorded in the registry as Feast does, so incremental runs and
``materialized_until`` see it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shared import feature_definitions as fd
from zadanie2.feature_repo.feature_views import ENTITY_JOIN_KEYS
from zadanie2.online_feature_reader import EntityKeyEncoder

FLOAT_TAG = 0x35  # ValueProto.float_val: field 6, wire type 5 (fixed32)
LIST_TAGS = {"int64_list": b"\x72", "float32_list": b"\x82\x01"}  # int64_list_val = 14, float_list_val = 16
PACKED_TAG = b"\x0a"  # Int64List / FloatList: repeated field 1, packed (length-delimited)
_FEAST_VALUE_TYPES = {"int64": "INT64", "float32": "FLOAT", "int64_list": "INT64_LIST", "float32_list": "FLOAT_LIST"}
EVENT_TIMESTAMP = "event_timestamp"


@dataclass
class BulkLoadStats:
    view: str
    rows: int = 0
    written: int = 0
    skipped_not_newer: int = 0
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


class ValueColumnEncoder:
    """Serialized ``ValueProto`` of a whole feature column, byte-identical to Feast's materialization."""

    def __init__(self) -> None:
        from feast.type_map import python_values_to_proto_values
        from feast.value_type import ValueType

        self._to_protos = python_values_to_proto_values
        self._types = {dtype: ValueType[name] for dtype, name in _FEAST_VALUE_TYPES.items()}
        rng = np.random.default_rng(7)
        sample = np.concatenate([[0.0, -0.0, 1.0, -1.0, 1e-42, np.inf, -np.inf, 3.4e38], rng.normal(0, 50, 64)])
        floats = sample.astype(np.float32)
        ints = [[], [0], [1, -1, 2**62, -(2**63), 127, 128, 16383, 16384], list(range(300)), [2053013555631882655]]
        float_lists = [[], [0.0], floats.tolist(), [1.5] * 40]
        if (
            self._floats(floats) != self._feast(floats, "float32")
            or self._lists(pa.array(ints, pa.list_(pa.int64())), "int64_list") != self._feast(ints, "int64_list")
            or self._lists(pa.array(float_lists, pa.list_(pa.float32())), "float32_list")
            != self._feast(float_lists, "float32_list")
        ):
            raise RuntimeError("Feast's value serialization changed; the Redis bulk writer needs an update")

    def _feast(self, values: Any, dtype: str) -> list[bytes]:
        return [proto.SerializeToString() for proto in self._to_protos(values, self._types[dtype])]

    def _floats(self, values: np.ndarray, *, resp: bool = False) -> list[bytes]:
        """``0x35`` + float32 little-endian per value (with ``resp`` framed as ``$5\\r\\n...\\r\\n``)."""
        layout = [("tag", "u1"), ("value", "<f4")]
        if resp:
            layout = [("head", "V4"), *layout, ("tail", "V2")]
        records = np.empty(len(values), dtype=layout)
        records["tag"], records["value"] = FLOAT_TAG, values
        if resp:
            records["head"], records["tail"] = np.void(b"$5\r\n"), np.void(b"\r\n")
        encoded: list[bytes] = records.view(f"V{records.dtype.itemsize}").tolist()
        for i in np.flatnonzero(np.isnan(values)).tolist():
            encoded[i] = _bulk(b"") if resp else b""  # Feast writes NaN as an empty (null) value
        return encoded

    def _lists(self, column: pa.ChunkedArray | pa.Array, dtype: str, *, resp: bool = False) -> list[bytes]:
        """List values without nulls: the packed payload of every row from one numpy pass, then framed
        (and with ``resp`` also as RESP bulk strings)."""
        lists = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        offsets = lists.offsets.to_numpy()
        flat = lists.flatten().to_numpy(zero_copy_only=False)
        if dtype == "float32_list":
            payload = np.ascontiguousarray(flat, dtype="<f4").view(np.uint8)
            ends = offsets.astype(np.int64) * 4
        else:
            payload, widths = _varints(flat.astype(np.int64, copy=False))
            ends = np.concatenate([[0], np.cumsum(widths)])[offsets]
        data = payload.tobytes()
        tag, varint = LIST_TAGS[dtype], _varint_bytes
        empty = _bulk(tag + b"\x00") if resp else tag + b"\x00"
        out: list[bytes] = []
        for start, end in zip(ends[:-1].tolist(), ends[1:].tolist(), strict=True):
            if start == end:
                out.append(empty)
                continue
            inner = PACKED_TAG + varint(end - start) + data[start:end]
            value = tag + varint(len(inner)) + inner
            out.append(b"$%d\r\n%s\r\n" % (len(value), value) if resp else value)
        return out

    def encode(self, column: pa.ChunkedArray | pa.Array, dtype: str, *, resp: bool = False) -> list[bytes]:
        """The serialized ``ValueProto`` of every value; with ``resp`` each framed as a RESP bulk string
        (``$<len>\\r\\n<bytes>\\r\\n``), in numpy where it can be."""
        if dtype in LIST_TAGS and column.null_count == 0:
            return self._lists(column, dtype, resp=resp)
        if dtype == "float32":
            return self._floats(column.to_numpy(zero_copy_only=False).astype(np.float32, copy=False), resp=resp)
        values = column.to_numpy(zero_copy_only=False)
        frame = _bulk if resp else bytes
        if dtype == "int64" and column.null_count == 0:
            distinct, inverse = np.unique(values, return_inverse=True)
            return _object_array([frame(v) for v in self._feast(distinct, dtype)])[inverse].tolist()
        return [frame(v) for v in self._feast(values, dtype)]


def _object_array(items: Sequence[bytes]) -> np.ndarray:
    """A 1-d object array of bytes (a lookup table indexed by ``np.unique``'s inverse)."""
    table = np.empty(len(items), dtype=object)
    table[:] = items
    return table


def _varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Protobuf varints of int64 values (negatives as 10-byte two's complement): the bytes, and each width."""
    unsigned = values.view(np.uint64)
    widths = np.ones(len(unsigned), dtype=np.int64)
    for k in range(1, 10):
        widths += unsigned >= np.uint64(1 << (7 * k))
    groups = np.empty((len(unsigned), 10), dtype=np.uint8)
    for k in range(10):
        seven = (unsigned >> np.uint64(7 * k)) & np.uint64(0x7F)
        groups[:, k] = seven.astype(np.uint8) | np.where(k < widths - 1, 0x80, 0).astype(np.uint8)
    return groups[np.arange(10) < widths[:, None]], widths


def _varint_bytes(value: int) -> bytes:
    if value < len(_SMALL_VARINTS):
        return _SMALL_VARINTS[value]
    return _encode_varint(value)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL_VARINTS = [_encode_varint(n) for n in range(1 << 14)]  # list lengths: one or two bytes


def timestamp_column(stamps: pa.ChunkedArray | pa.Array) -> tuple[list[bytes], np.ndarray]:
    """Feast's ``_ts`` bytes of each row and its time in nanoseconds (for the not-newer check)."""
    from feast import utils
    from google.protobuf.timestamp_pb2 import Timestamp

    times = pd.DatetimeIndex(pd.to_datetime(stamps.to_numpy(zero_copy_only=False), utc=True)).as_unit("ns")
    distinct, inverse = np.unique(times.asi8, return_inverse=True)
    encoded, nanos = [], []
    for value in pd.to_datetime(distinct, utc=True):
        proto = Timestamp()
        proto.FromDatetime(utils.make_tzaware(value.to_pydatetime()))
        encoded.append(proto.SerializeToString())
        nanos.append(proto.seconds * 1_000_000_000 + proto.nanos)
    return _object_array(encoded)[inverse].tolist(), np.asarray(nanos, dtype=np.int64)[inverse]


def _stored_nanos(raw: bytes | None) -> int:
    if not raw:
        return 0
    from google.protobuf.timestamp_pb2 import Timestamp

    stamp = Timestamp.FromString(raw)
    return int(stamp.seconds) * 1_000_000_000 + int(stamp.nanos)


class RedisBulkWriter:
    """Writes snapshot files of the four views into Feast's Redis layout (see the module docstring)."""

    def __init__(self, redis_url: str, project: str, serialization_version: int, batch_rows: int = 20_000) -> None:
        from feast.infra.online_stores.helpers import _mmh3

        self._connection = RespConnection(redis_url)
        self._batch_rows = batch_rows
        self._keys = {
            view: EntityKeyEncoder(ENTITY_JOIN_KEYS[view], project, serialization_version) for view in fd.VIEWS
        }
        self._values = ValueColumnEncoder()
        self._fields = {view: [_mmh3(f"{view}:{s.name}") for s in fd.features_of(view)] for view in fd.VIEWS}

    def close(self) -> None:
        self._connection.close()

    def write_file(self, view: str, path: Path, progress: Callable[[int], None] | None = None) -> BulkLoadStats:
        """Every row of one snapshot file (one row per entity) -> one hash per entity."""
        stats = BulkLoadStats(view)
        started = time.perf_counter()
        for batch in self._batches(view, path):
            written, skipped = self._write_batch(view, batch)
            stats.rows += batch.num_rows
            stats.written += written
            stats.skipped_not_newer += skipped
            if progress:
                progress(batch.num_rows)
        stats.seconds = round(time.perf_counter() - started, 3)
        return stats

    def _batches(self, view: str, path: Path) -> Iterator[pa.RecordBatch]:
        columns = [*ENTITY_JOIN_KEYS[view], EVENT_TIMESTAMP, *(s.name for s in fd.features_of(view))]
        yield from pq.ParquetFile(path).iter_batches(batch_size=self._batch_rows, columns=columns)

    def _write_batch(self, view: str, batch: pa.RecordBatch) -> tuple[int, int]:
        keys = self._keys[view].column_keys(
            {key: batch.column(key).to_numpy(zero_copy_only=False) for key in ENTITY_JOIN_KEYS[view]}
        )
        stamps, nanos = timestamp_column(batch.column(EVENT_TIMESTAMP))
        columns = [self._values.encode(batch.column(spec.name), spec.dtype, resp=True) for spec in fd.features_of(view)]
        ts_field = _bulk(f"_ts:{view}".encode())
        key_head = b"$%d\r\n" % self._keys[view].width
        hget = b"*3\r\n$4\r\nHGET\r\n" + key_head
        previous = self._round_trip([hget + key + b"\r\n" + ts_field for key in keys])
        newer = [i for i, raw in enumerate(previous) if raw is None or _stored_nanos(raw) < nanos[i]]
        hset = b"*%d\r\n$4\r\nHSET\r\n" % (2 + 2 * (1 + len(columns))) + key_head
        field_bulks = [_bulk(field) for field in self._fields[view]]
        commands = []
        for i in newer:
            parts = [hset, keys[i], b"\r\n", ts_field, _bulk(stamps[i])]
            for field_bulk, values in zip(field_bulks, columns, strict=True):
                parts += (field_bulk, values[i])
            commands.append(b"".join(parts))
        self._round_trip(commands)
        return len(newer), len(keys) - len(newer)

    def _round_trip(self, commands: Sequence[bytes]) -> list[Any]:
        """Send RESP commands in one write and read all their replies; a Redis error reply raises."""
        if not commands:
            return []
        self._connection.send(b"".join(commands))
        return self._connection.replies(len(commands))


class RespConnection:
    """One plain RESP connection (auth, db, TLS from a redis:// URL) that reads many replies per call.

    redis-py's pipeline spends ~15 µs per command in Python; here a batch is one ``sendall`` and the
    replies are parsed by hiredis from large reads, ~1 µs each.
    """

    def __init__(self, redis_url: str, timeout_s: float = 60.0) -> None:
        import socket
        import ssl

        import hiredis

        from zadanie2.settings import redis_connection_parts

        parts = redis_connection_parts(redis_url)
        sock = socket.create_connection((str(parts["host"]), int(parts["port"])), timeout=timeout_s)  # type: ignore[call-overload]
        if parts["ssl"]:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=str(parts["host"]))
        self._sock = sock
        self._reader = hiredis.Reader()
        self._error = hiredis.ReplyError
        setup = []
        if parts["password"] is not None:
            credentials = [parts["username"], parts["password"]] if parts["username"] else [parts["password"]]
            setup.append([b"AUTH", *(str(c).encode() for c in credentials)])
        setup.append([b"SELECT", str(parts["db"]).encode()])
        self.send(b"".join(b"*%d\r\n" % len(args) + b"".join(_bulk(a) for a in args) for args in setup))
        self.replies(len(setup))

    def send(self, data: bytes) -> None:
        self._sock.sendall(data)

    def replies(self, count: int) -> list[Any]:
        out: list[Any] = []
        while True:
            reply = self._reader.gets()
            while reply is not False:
                if isinstance(reply, self._error):
                    raise RuntimeError(f"Redis refused a bulk write: {reply}")
                out.append(reply)
                if len(out) == count:
                    return out
                reply = self._reader.gets()
            data = self._sock.recv(1 << 20)
            if not data:
                raise ConnectionError("Redis closed the connection during a bulk write")
            self._reader.feed(data)

    def close(self) -> None:
        self._sock.close()


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def record_materialization(store: Any, view: str, start: datetime, end: datetime) -> None:
    """The interval in Feast's registry, as ``FeatureStore.materialize`` records it after a view."""
    store.registry.apply_materialization(store.get_feature_view(view), store.project, start, end, commit=True)
