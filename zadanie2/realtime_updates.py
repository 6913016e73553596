"""Real-time feature updates: events arriving after materialization refresh their users' online rows.

For each user in the new events the user's whole history (the batch event file + every event
pushed before) is loaded, the new events are added, and the user's ``user_stats`` row and all of
the user's ``user_product_interactions`` rows are recomputed *with the shared feature functions*
as of just after the newest event (event time, see ``_next_as_of``), then written with
``FeatureStore.write_to_online_store`` (event timestamp = that time). Both views only depend on
the user's own events, so this is exactly what a full rebuild would compute at that instant.
The events are first appended to the offline event log (``<realtime_event_log_dir>/part-*.parquet``),
which ``recsys features build`` reads next time, so the next training sees the same values.

Product and category views need every user's events (global rates, trends); they refresh with
the next build + materialize.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from shared import column_names as col
from shared import feature_definitions as fd
from shared.errors import UserInputError
from shared.event_loader import load_events, validate_events
from shared.feature_computation import as_utc, compute_user_product_interactions, compute_user_stats
from zadanie2.feature_repo.feature_views import EVENT_TIMESTAMP
from zadanie2.settings import FeatureStoreSettings

ONE_MICROSECOND = pd.Timedelta(microseconds=1)


@dataclass
class RealtimeUpdateReport:
    as_of: pd.Timestamp
    users: list[int] = field(default_factory=list)
    events: int = 0
    pair_rows: int = 0
    log_file: Path | None = None
    seconds: float = 0.0


def user_history(events_path: Path, log_dir: Path, user_ids: Sequence[int]) -> pd.DataFrame:
    """Every stored event (batch file + real-time log) of ``user_ids``, validated."""
    ids = [int(u) for u in user_ids]
    parts: list[pd.DataFrame] = []
    if events_path.exists():
        if events_path.suffix in (".parquet", ".pq"):
            parts.append(pd.read_parquet(events_path, filters=[(col.USER_ID, "in", ids)]))
        else:
            loaded = load_events(events_path).events
            parts.append(loaded[loaded[col.USER_ID].isin(ids)])
    for part in sorted(Path(log_dir).glob("*.parquet")) if Path(log_dir).exists() else []:
        parts.append(pd.read_parquet(part, filters=[(col.USER_ID, "in", ids)]))
    parts = [p for p in parts if len(p)]
    if not parts:
        return validate_events(pd.DataFrame({c: [] for c in col.REQUIRED_COLUMNS})).events
    return validate_events(pd.concat(parts, ignore_index=True)).events


def recompute_user_rows(
    history: pd.DataFrame, new_events: pd.DataFrame, as_of: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(user_stats, user_product_interactions) of the new events' users as of ``as_of`` (pure)."""
    users = new_events[col.USER_ID].unique()
    combined = pd.concat([history, new_events], ignore_index=True)
    combined = combined[~combined.duplicated(keep="first")]
    combined = combined[combined[col.USER_ID].isin(users)].sort_values(col.EVENT_TIME, kind="stable")
    return compute_user_stats(combined, as_of), compute_user_product_interactions(combined, as_of)


def online_frame(table: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """A feature table (indexed by its keys) as ``write_to_online_store`` input."""
    frame = table.reset_index()
    frame[EVENT_TIMESTAMP] = as_of
    for spec_name in frame.columns:
        if spec_name in fd.FEATURES_BY_NAME and fd.FEATURES_BY_NAME[spec_name].dtype.endswith("_list"):
            frame[spec_name] = frame[spec_name].map(list)
    return frame


def append_to_event_log(events: pd.DataFrame, log_dir: Path) -> Path:
    """Write ``events`` as a new Parquet part of the offline event log (atomic rename)."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S%f")
    path = log_dir / f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = path.with_suffix(".parquet.tmp")
    import pyarrow as pa

    pq.write_table(pa.Table.from_pandas(events, preserve_index=False), tmp)
    tmp.replace(path)
    return path


class RealtimeFeatureUpdater:
    """Applies new events to the online store (see module doc). Keeps one FeatureStore open.

    Thread-safe: updates run one at a time, so two concurrent batches for the same user cannot
    each miss the other's events (read history -> log -> write is one critical section).
    """

    def __init__(self, settings: FeatureStoreSettings, store: Any | None = None) -> None:
        from zadanie2.feature_store_config import open_feature_store

        self.settings = settings
        self.store = store or open_feature_store(settings)
        self._last_as_of: pd.Timestamp | None = None
        self._lock = threading.Lock()

    def _next_as_of(self, events: pd.DataFrame, as_of: pd.Timestamp | None) -> pd.Timestamp:
        """When the recomputed rows are "as of": event time, not the wall clock.

        Default: just after the newest new event, so the rows are what a snapshot at that instant
        would hold (and a later build's data end, one whole second after its last event, is newer
        and replaces them when materialized). Always strictly after the last materialization and
        the previous update, because Feast's Redis store drops writes that are not newer than the
        stored row.
        """
        from zadanie2.materialization import materialization_ends

        stamp = as_utc(as_of) if as_of is not None else as_utc(events[col.EVENT_TIME].max()) + ONE_MICROSECOND
        stamp = stamp.floor("us")
        ends = [end for end in materialization_ends(self.store).values() if end is not None]
        floors = [end + ONE_MICROSECOND for end in ends]
        if self._last_as_of is not None:
            floors.append(self._last_as_of + ONE_MICROSECOND)
        stamp = max([stamp, *floors])
        self._last_as_of = stamp
        return stamp

    def apply(
        self, events: pd.DataFrame, *, as_of: pd.Timestamp | None = None, drop_unknown_event_types: bool = False
    ) -> RealtimeUpdateReport:
        """Log ``events`` offline, then rewrite their users' online rows as of the newest event.

        Raises UserInputError (via the shared validator) on events that break the schema, or when
        no event is left.
        """
        with self._lock:
            return self._apply_locked(events, as_of, drop_unknown_event_types)

    def _apply_locked(
        self, events: pd.DataFrame, as_of: pd.Timestamp | None, drop_unknown_event_types: bool
    ) -> RealtimeUpdateReport:
        started = time.perf_counter()
        new_events = validate_events(
            events, source="realtime events", drop_unknown_event_types=drop_unknown_event_types
        ).events
        if new_events.empty:
            raise UserInputError("no valid events to apply")
        paths = self.settings.paths()
        stamp = self._next_as_of(new_events, as_of)
        history = user_history(paths["events"], paths["realtime_event_log"], new_events[col.USER_ID].unique())
        log_file = append_to_event_log(new_events, paths["realtime_event_log"])
        user_rows, pair_rows = recompute_user_rows(history, new_events, stamp)
        self.store.write_to_online_store(fd.USER_STATS, online_frame(user_rows, stamp))
        if len(pair_rows):
            self.store.write_to_online_store(fd.USER_PRODUCT_INTERACTIONS, online_frame(pair_rows, stamp))
        return RealtimeUpdateReport(
            as_of=stamp,
            users=[int(u) for u in user_rows.index],
            events=len(new_events),
            pair_rows=len(pair_rows),
            log_file=log_file,
            seconds=time.perf_counter() - started,
        )

    def apply_records(self, records: Sequence[Mapping[str, Any]]) -> RealtimeUpdateReport | None:
        """``apply`` for event dicts (e.g. the service's /feedback).

        A missing ``event_time`` means now (UTC). Event types outside the event schema (e.g. an
        impression or click the service also records) are dropped: no feature counts them.
        Returns None when nothing is left to apply.
        """
        if not records:
            return None
        frame = pd.DataFrame([dict(r) for r in records])
        if col.EVENT_TIME not in frame:
            frame[col.EVENT_TIME] = pd.Timestamp.now(tz="UTC")
        frame[col.EVENT_TIME] = frame[col.EVENT_TIME].fillna(pd.Timestamp.now(tz="UTC"))
        known = frame[col.EVENT_TYPE].astype("string").str.strip().str.lower().isin(col.EVENT_TYPES)
        if not known.any():
            return None
        return self.apply(frame[known.fillna(False).to_numpy()], drop_unknown_event_types=True)

    __call__ = apply_records
