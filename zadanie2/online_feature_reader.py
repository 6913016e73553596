"""The online read path of the inference service: one user's row, pair rows, product and category blocks.

Two implementations of :class:`OnlineFeatureReader`:

* :class:`RedisFeatureReader` reads Feast's Redis layout directly. Feast stores one hash per entity
  key (``serialize_entity_key(key) + project``); its fields are ``murmur3("<view>:<feature>")``
  and the values are serialized ``ValueProto``. The keys are built with Feast's own
  ``serialize_entity_key`` (the byte template is taken from it and cross-checked at start-up) and
  the field hashes with Feast's own murmur3 helper, so the reader finds exactly what
  ``materialize``/``write_to_online_store`` wrote. One HMGET (one round trip) per user row, one
  pipelined round trip for any number of products/pairs; scalar columns are decoded in bulk.
  Every call is bounded by the socket timeout; Redis errors become :class:`FeatureStoreTimeout` /
  :class:`FeatureStoreUnavailable`.
* :class:`FeastSdkFeatureReader` goes through ``FeatureStore.get_online_features`` and works with
  any online store (SQLite by default).

Both return the same shapes: ``read_user`` -> {feature: int | float | list} or None; ``read_products``
/ ``read_categories`` -> frames shaped like ``shared.feature_computation.compute_*_stats`` (index
``product_id``/``category_id``, registry dtypes, only entities that have a row).
``recsys features check`` verifies both against the offline store. Feast is imported when a reader
is built (it costs seconds), never at module import.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from shared import column_names as col
from shared import feature_definitions as fd
from zadanie2.feature_repo.feature_views import ENTITY_JOIN_KEYS
from zadanie2.settings import FeatureStoreSettings, redis_connection_parts

FeatureRow = dict[str, Any]
_USER_FEATURES = tuple(s.name for s in fd.features_of(fd.USER_STATS))
_PAIR_FEATURES = tuple(s.name for s in fd.features_of(fd.USER_PRODUCT_INTERACTIONS))
_INDEX_OF_VIEW = {fd.PRODUCT_STATS: col.PRODUCT_ID, fd.CATEGORY_STATS: col.CATEGORY_ID}


class FeatureStoreError(Exception):
    """The online store could not answer."""


class FeatureStoreUnavailable(FeatureStoreError):
    """The online store is down, unreachable or answered with an error."""


class FeatureStoreTimeout(FeatureStoreError):
    """The online store did not answer within the read timeout."""


@runtime_checkable
class OnlineFeatureReader(Protocol):
    """What the inference service reads from the online store (all calls may raise FeatureStoreError)."""

    def read_user(self, user_id: int) -> FeatureRow | None:
        """Every user_stats feature of the user (lists as python lists), or None for an unknown user."""
        ...

    def read_user_products(self, user_id: int, product_ids: Sequence[int]) -> dict[int, FeatureRow]:
        """user_product_interactions rows of (user, product) pairs that exist; missing pairs are absent."""
        ...

    def read_products(self, product_ids: Sequence[int]) -> pd.DataFrame:
        """product_stats of the products that have a row (index product_id, registry dtypes)."""
        ...

    def read_categories(self, category_ids: Sequence[int]) -> pd.DataFrame:
        """category_stats of the categories that have a row (index category_id, registry dtypes)."""
        ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


# --- shared shaping -------------------------------------------------------------------------------


def stats_frame(view: str, ids: Sequence[int], columns: Mapping[str, Sequence[Any] | np.ndarray]) -> pd.DataFrame:
    """A frame like ``compute_<view>``: index = ids (int64), registry column order and dtypes.

    A column with a missing value (None) becomes float64 with NaN instead of taking a default, so
    a damaged row shows up in the consistency check instead of being papered over.
    """
    index = pd.Index(np.asarray(ids, dtype=np.int64), name=_INDEX_OF_VIEW[view])
    data: dict[str, Any] = {}
    for spec in fd.features_of(view):
        values = columns[spec.name]
        if isinstance(values, np.ndarray) and values.dtype != object:
            data[spec.name] = values.astype(spec.dtype, copy=False)
        elif spec.dtype.endswith("_list"):
            data[spec.name] = pd.Series(list(values), index=index, dtype=object)
        elif any(v is None for v in values):
            data[spec.name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        else:
            data[spec.name] = np.asarray(values, dtype=spec.dtype)
    return pd.DataFrame(data, index=index)


def empty_stats_frame(view: str) -> pd.DataFrame:
    return stats_frame(
        view,
        [],
        {s.name: np.array([], dtype=s.dtype if "list" not in s.dtype else object) for s in fd.features_of(view)},
    )


def _as_int_ids(ids: Iterable[int]) -> list[int]:
    return [int(i) for i in ids]


# --- Redis ----------------------------------------------------------------------------------------


def _column_message_classes() -> tuple[Any, Any]:
    """Protobuf messages with ``repeated int64 v = 4`` / ``repeated float v = 6``.

    ValueProto keeps int64 values in field 4 and float32 values in field 6, so the concatenation
    of N serialized single-value ValueProtos *is* a serialized message with that repeated field:
    one C-level parse decodes a whole column. (Protobuf parsers accept unpacked repeated scalars.)
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FileDescriptorProto(name="zadanie2_value_columns.proto", package="zadanie2")
    for name, number, kind in (
        ("Int64Column", 4, descriptor_pb2.FieldDescriptorProto.TYPE_INT64),
        ("FloatColumn", 6, descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT),
    ):
        message = proto.message_type.add(name=name)
        message.field.add(name="v", number=number, type=kind, label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("zadanie2.Int64Column")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("zadanie2.FloatColumn")),
    )


class _ValueDecoder:
    """ValueProto bytes -> python values, with a bulk path for whole scalar columns.

    ``decode`` is the general (protobuf) path. ``decode_column`` parses a column of one scalar
    dtype from many entities in one call (see :func:`_column_message_classes`); if the count does
    not come out right (a missing, null or differently typed value) it falls back to ``decode``
    per value, so the fast path can never change a result.
    """

    def __init__(self) -> None:
        from feast.protos.feast.types.Value_pb2 import Value

        self._value_from = Value.FromString
        int64_column, float_column = _column_message_classes()
        self._column_from = {"int64": int64_column.FromString, "float32": float_column.FromString}

    def decode(self, raw: bytes | None) -> Any:
        if raw is None:
            return None
        value = self._value_from(raw)
        kind = value.WhichOneof("val")
        if kind is None or kind == "null_val":
            return None
        if kind.endswith("_list_val"):
            return list(getattr(value, kind).val)
        return getattr(value, kind)

    def decode_column(self, raws: Sequence[bytes | None], dtype: str) -> np.ndarray | list[Any]:
        parse = self._column_from.get(dtype)
        if parse is not None and None not in raws:
            values = parse(b"".join(raws)).v  # type: ignore[arg-type]
            if len(values) == len(raws):
                return np.asarray(values, dtype=dtype)
        return [self.decode(r) for r in raws]


class EntityKeyEncoder:
    """Redis hash key of an int64 entity key: Feast's ``serialize_entity_key(...) + project``.

    Feast's serialization of int64 keys is a fixed header (sorted join keys) followed, per key, by
    ``<type><len=8><int64 little-endian>``. The header and the per-value prefix are taken from
    Feast's own function once, and every encoder is verified against it on sample values at start,
    so a change in Feast's format fails loudly at start-up instead of silently missing every key.
    ``column_keys`` builds the keys of whole columns at once (the Redis bulk writer), from the same parts.
    """

    VALUE_RECORD = 16  # 4 bytes type + 4 bytes length + 8 bytes value

    def __init__(self, join_keys: Sequence[str], project: str, serialization_version: int) -> None:
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        def feast_key(values: Sequence[int]) -> bytes:
            proto = EntityKey(join_keys=list(join_keys), entity_values=[Value(int64_val=v) for v in values])
            return serialize_entity_key(proto, entity_key_serialization_version=serialization_version)

        self.sorted_keys = sorted(join_keys)
        self._order = [list(join_keys).index(k) for k in self.sorted_keys]
        template = feast_key([0] * len(join_keys))
        self._header = template[: len(template) - self.VALUE_RECORD * len(join_keys)]
        self._value_prefix = template[len(self._header) : len(self._header) + 8]
        self._project = project.encode("utf-8")
        self._pack = struct.Struct("<q").pack
        self._single_head = self._header + self._value_prefix
        self.join_keys = tuple(join_keys)
        self.width = len(template) + len(self._project)
        samples = [[v + i for i in range(len(join_keys))] for v in (1, -7, 2**62 + 12345, 2053902111092659954)]
        expected = [feast_key(values) + self._project for values in samples]
        columns = {key: np.array([values[i] for values in samples], dtype=np.int64) for i, key in enumerate(join_keys)}
        if [self.key(*values) for values in samples] != expected or self.column_keys(columns) != expected:
            raise RuntimeError("Feast's entity key serialization changed; RedisFeatureReader needs an update")

    def key(self, *values: int) -> bytes:
        """Key for values given in the join-key order passed to the constructor."""
        if len(values) == 1:  # hot path: one int64 key
            return self._single_head + self._pack(int(values[0])) + self._project
        prefix, pack = self._value_prefix, self._pack
        parts = [prefix + pack(int(values[i])) for i in self._order]
        return self._header + b"".join(parts) + self._project

    def column_keys(self, columns: Mapping[str, np.ndarray]) -> list[bytes]:
        """The key of every row of int64 ``columns`` (one per join key): one uint8 matrix cut into rows."""
        n = len(columns[self.join_keys[0]])
        matrix = np.empty((n, self.width), dtype=np.uint8)
        matrix[:, : len(self._header)] = np.frombuffer(self._header, dtype=np.uint8)
        offset = len(self._header)
        for key in self.sorted_keys:
            matrix[:, offset : offset + 8] = np.frombuffer(self._value_prefix, dtype=np.uint8)
            values = np.ascontiguousarray(columns[key], dtype="<i8")
            matrix[:, offset + 8 : offset + 16] = values.view(np.uint8).reshape(n, 8)
            offset += self.VALUE_RECORD
        matrix[:, offset:] = np.frombuffer(self._project, dtype=np.uint8)
        return matrix.view(f"V{self.width}").ravel().tolist()


class RedisFeatureReader:
    """Direct reads of Feast's Redis online store (see module doc). Thread-safe (connection pool)."""

    def __init__(
        self,
        redis_url: str,
        project: str,
        *,
        timeout_s: float = 0.1,
        entity_key_serialization_version: int = 3,
        client: Any | None = None,
    ) -> None:
        from feast.infra.online_stores.helpers import _mmh3

        self.project = project
        self.redis_url = redis_url
        self.timeout_s = timeout_s
        self._client = client or _redis_client(redis_url, timeout_s)
        self._decoder = _ValueDecoder()
        self._keys = {
            view: EntityKeyEncoder(ENTITY_JOIN_KEYS[view], project, entity_key_serialization_version)
            for view in fd.VIEWS
        }
        self._specs = {view: fd.features_of(view) for view in fd.VIEWS}
        self._fields = {view: [_mmh3(f"{view}:{s.name}") for s in self._specs[view]] for view in fd.VIEWS}
        import redis

        self._timeout_errors: tuple[type[BaseException], ...] = (redis.TimeoutError, TimeoutError)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)

    @classmethod
    def from_settings(cls, settings: FeatureStoreSettings) -> RedisFeatureReader:
        from zadanie2.feature_store_config import ENTITY_KEY_SERIALIZATION_VERSION

        if not settings.redis_url:
            from shared.errors import UserInputError

            raise UserInputError("RedisFeatureReader needs REDIS_URL")
        return cls(
            settings.redis_url,
            settings.project,
            timeout_s=settings.read_timeout_ms / 1000.0,
            entity_key_serialization_version=ENTITY_KEY_SERIALIZATION_VERSION,
        )

    # -- public reads -------------------------------------------------------------------------

    def read_user(self, user_id: int) -> FeatureRow | None:
        key = self._keys[fd.USER_STATS].key(user_id)
        raws = self._call(lambda: self._client.hmget(key, self._fields[fd.USER_STATS]))
        return self.decode_user(raws)

    def read_user_products(self, user_id: int, product_ids: Sequence[int]) -> dict[int, FeatureRow]:
        products = _as_int_ids(product_ids)
        encoder = self._keys[fd.USER_PRODUCT_INTERACTIONS]
        keys = [encoder.key(user_id, p) for p in products]
        replies = self._hmget_many(keys, self._fields[fd.USER_PRODUCT_INTERACTIONS])
        return self.decode_user_products(products, replies)

    # -- the two request reads as command + decode, for callers that do the I/O themselves ----------
    # (the service reads on its event loop; the bytes and the decoding are the ones used above)

    @property
    def connection_parts(self) -> dict[str, object]:
        """host, port, db, username, password, ssl of the Redis this reader was built for."""
        return redis_connection_parts(self.redis_url)

    def user_command(self, user_id: int) -> bytes:
        """RESP bytes of the HMGET of one user's user_stats row (one reply: the field values)."""
        return _hmget_packet([self._keys[fd.USER_STATS].key(user_id)], self._fields[fd.USER_STATS])

    def decode_user(self, raws: Sequence[bytes | None]) -> FeatureRow | None:
        """The HMGET reply of :meth:`user_command` -> the user's row, or None for an unknown user."""
        if all(r is None for r in raws):
            return None
        decode = self._decoder.decode
        return {spec.name: decode(raw) for spec, raw in zip(self._specs[fd.USER_STATS], raws, strict=True)}

    def user_products_command(self, user_id: int, product_ids: Sequence[int]) -> bytes:
        """RESP bytes of one HMGET per (user, product) pair (``len(product_ids)`` replies, in order)."""
        encoder = self._keys[fd.USER_PRODUCT_INTERACTIONS]
        keys = [encoder.key(user_id, p) for p in _as_int_ids(product_ids)]
        return _hmget_packet(keys, self._fields[fd.USER_PRODUCT_INTERACTIONS])

    def decode_user_products(
        self, product_ids: Sequence[int], replies: Sequence[Sequence[bytes | None]]
    ) -> dict[int, FeatureRow]:
        """The replies of :meth:`user_products_command` -> rows of the pairs that exist.

        Decoded a column (feature) at a time like the product block (``_decode_found``; per-value
        decoding whenever a value is missing or of another type); values come back as Python numbers,
        as the per-value path gives them.
        """
        ids = _as_int_ids(product_ids)
        found, columns = self._decode_found(fd.USER_PRODUCT_INTERACTIONS, replies)
        if not found:
            return {}
        values = [c.tolist() if isinstance(c, np.ndarray) else c for c in columns.values()]
        return {
            ids[i]: dict(zip(_PAIR_FEATURES, row, strict=True))
            for i, row in zip(found, zip(*values, strict=True), strict=True)
        }

    def read_products(self, product_ids: Sequence[int]) -> pd.DataFrame:
        return self._read_block(fd.PRODUCT_STATS, product_ids)

    def read_categories(self, category_ids: Sequence[int]) -> pd.DataFrame:
        return self._read_block(fd.CATEGORY_STATS, category_ids)

    def ping(self) -> bool:
        try:
            return bool(self._call(self._client.ping))
        except FeatureStoreError:
            return False

    def close(self) -> None:
        self._client.close()

    # -- internals ----------------------------------------------------------------------------

    def _read_block(self, view: str, ids: Sequence[int]) -> pd.DataFrame:
        wanted = _as_int_ids(ids)
        if not wanted:
            return empty_stats_frame(view)
        encoder = self._keys[view]
        replies = self._hmget_many([encoder.key(i) for i in wanted], self._fields[view])
        found, data = self._decode_found(view, replies)
        return stats_frame(view, [wanted[i] for i in found], data)

    def _decode_found(
        self, view: str, replies: Sequence[Sequence[bytes | None]]
    ) -> tuple[list[int], dict[str, np.ndarray | list[Any]]]:
        """Positions of the replies with at least one value (entities that exist), and their features
        decoded a column at a time (one protobuf parse per feature, see ``_ValueDecoder.decode_column``)."""
        found = [i for i, raws in enumerate(replies) if raws.count(None) != len(raws)]
        rows = [replies[i] for i in found]
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in self._specs[view]]
        data = {
            spec.name: self._decoder.decode_column(column, spec.dtype)
            for spec, column in zip(self._specs[view], columns, strict=True)
        }
        return found, data

    def _hmget_many(self, keys: Sequence[bytes], fields: Sequence[bytes]) -> list[list[bytes | None]]:
        """One HMGET per key, all written in one packet and read back in order (one round trip).

        The commands are RESP-encoded here (the field part is identical for every key), which is
        ~3x faster than redis-py's pipeline object for hundreds of keys. A failure part-way leaves
        unread replies on the socket, so that connection is dropped, never reused.
        """
        if not keys:
            return []
        packet = _hmget_packet(keys, fields)

        def run() -> list[list[bytes | None]]:
            pool = self._client.connection_pool
            connection = pool.get_connection()
            try:
                connection.send_packed_command([packet], check_health=False)
                replies = [connection.read_response() for _ in keys]
            except BaseException:
                connection.disconnect()
                raise
            finally:
                pool.release(connection)
            return replies

        return self._call(run)

    def _call(self, function: Any) -> Any:
        try:
            return function()
        except self._timeout_errors as exc:
            raise FeatureStoreTimeout(f"Redis read timed out after {self.timeout_s * 1000:.0f} ms") from exc
        except self._errors as exc:
            raise FeatureStoreUnavailable(f"Redis read failed: {type(exc).__name__}: {exc}") from exc


def _hmget_command_prefix(n_fields: int) -> bytes:
    return b"*%d\r\n$5\r\nHMGET\r\n" % (n_fields + 2)


def _resp_fields(fields: Sequence[bytes]) -> bytes:
    return b"".join(b"$%d\r\n%s\r\n" % (len(f), f) for f in fields)


def _hmget_packet(keys: Sequence[bytes], fields: Sequence[bytes]) -> bytes:
    """One RESP-encoded HMGET per key, concatenated (the field part is identical for every key)."""
    command = _hmget_command_prefix(len(fields))
    suffix = _resp_fields(fields)
    return b"".join([command + b"$%d\r\n" % len(key) + key + b"\r\n" + suffix for key in keys])


def _redis_client(redis_url: str, timeout_s: float) -> Any:
    """A pooled client whose every socket operation is bounded by ``timeout_s``.

    Retries: one immediate retry on a broken connection (e.g. after a Redis restart), none on a
    timeout, so one call never takes much longer than its budget.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    parts = redis_connection_parts(redis_url)
    return redis.Redis(
        host=str(parts["host"]),
        port=int(parts["port"]),  # type: ignore[call-overload]
        db=int(parts["db"]),  # type: ignore[call-overload]
        username=parts["username"],  # type: ignore[arg-type]
        password=parts["password"],  # type: ignore[arg-type]
        ssl=bool(parts["ssl"]),
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        decode_responses=False,
    )


# --- Feast SDK (any online store) -----------------------------------------------------------------


class FeastSdkFeatureReader:
    """Reads through ``FeatureStore.get_online_features``: SQLite by default, or any store Feast supports."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._refs = {view: [f"{view}:{s.name}" for s in fd.features_of(view)] for view in fd.VIEWS}

    @classmethod
    def from_settings(cls, settings: FeatureStoreSettings) -> FeastSdkFeatureReader:
        from zadanie2.feature_store_config import open_feature_store

        return cls(open_feature_store(settings))

    def read_user(self, user_id: int) -> FeatureRow | None:
        result = self._online(fd.USER_STATS, [{col.USER_ID: int(user_id)}])
        row = {name: result[name][0] for name in _USER_FEATURES}
        return None if all(v is None for v in row.values()) else row

    def read_user_products(self, user_id: int, product_ids: Sequence[int]) -> dict[int, FeatureRow]:
        products = _as_int_ids(product_ids)
        if not products:
            return {}
        rows = [{col.USER_ID: int(user_id), col.PRODUCT_ID: p} for p in products]
        result = self._online(fd.USER_PRODUCT_INTERACTIONS, rows)
        out: dict[int, FeatureRow] = {}
        for i, product in enumerate(products):
            row = {name: result[name][i] for name in _PAIR_FEATURES}
            if any(v is not None for v in row.values()):
                out[product] = row
        return out

    def read_products(self, product_ids: Sequence[int]) -> pd.DataFrame:
        return self._read_block(fd.PRODUCT_STATS, product_ids)

    def read_categories(self, category_ids: Sequence[int]) -> pd.DataFrame:
        return self._read_block(fd.CATEGORY_STATS, category_ids)

    def ping(self) -> bool:
        try:
            self._online(fd.CATEGORY_STATS, [{col.CATEGORY_ID: fd.UNKNOWN_ID}])
            return True
        except FeatureStoreError:
            return False

    def close(self) -> None:
        """Nothing to release: Feast opens online-store connections per call (SQLite) or per process."""

    def _read_block(self, view: str, ids: Sequence[int]) -> pd.DataFrame:
        wanted = _as_int_ids(ids)
        if not wanted:
            return empty_stats_frame(view)
        key = _INDEX_OF_VIEW[view]
        result = self._online(view, [{key: i} for i in wanted])
        names = [s.name for s in fd.features_of(view)]
        found = [i for i in range(len(wanted)) if any(result[n][i] is not None for n in names)]
        data = {n: [result[n][i] for i in found] for n in names}
        return stats_frame(view, [wanted[i] for i in found], data)

    def _online(self, view: str, entity_rows: list[dict[str, int]]) -> dict[str, list[Any]]:
        try:
            return dict(self._store.get_online_features(features=self._refs[view], entity_rows=entity_rows).to_dict())
        except Exception as exc:  # Feast raises store-specific errors (sqlite3, redis, ...)
            if "timeout" in type(exc).__name__.lower():
                raise FeatureStoreTimeout(f"online store read timed out: {exc}") from exc
            raise FeatureStoreUnavailable(f"online store read failed: {type(exc).__name__}: {exc}") from exc


def create_feature_reader(settings: FeatureStoreSettings) -> OnlineFeatureReader:
    """The service's reader: direct Redis when the online store is Redis, else the Feast SDK."""
    if settings.online_store_kind == "redis":
        return RedisFeatureReader.from_settings(settings)
    return FeastSdkFeatureReader.from_settings(settings)
