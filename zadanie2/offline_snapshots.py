"""Offline feature snapshots: the shared feature functions evaluated at regular cutoffs, as Parquet.

``recsys features build`` writes, per feature view, one Parquet file per cutoff
(``<offline_dir>/<view>/<YYYYmmddTHHMMSSZ>.parquet``) with the entity keys, every feature of the
view (registry dtypes, lists as Arrow lists) and ``event_timestamp`` = the cutoff. Cutoffs are
aligned to UTC midnight (``snapshot_freq``, default daily) plus one final snapshot at the data
end, so a training cutoff (zadanie1 floors them to midnight) hits a snapshot exactly and the
online store gets the newest state. A snapshot only depends on events strictly before its cutoff;
a fingerprint of those events (and of the feature code) lets a rebuild skip unchanged snapshots,
e.g. when only events pushed after the last materialization are new.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shared import column_names as col
from shared import feature_computation, feature_definitions
from shared import feature_definitions as fd
from shared.errors import UserInputError
from shared.event_loader import load_events, validate_events
from shared.feature_computation import FeatureTables, as_utc, compute_feature_tables
from zadanie2.feature_repo.feature_views import ENTITY_JOIN_KEYS, EVENT_TIMESTAMP

MANIFEST_NAME = "manifest.json"
MAX_FUTURE_SKEW = pd.Timedelta(days=1)  # client clocks run ahead; more than this is not an event yet
log = logging.getLogger(__name__)
_ARROW_TYPES = {
    "int64": pa.int64(),
    "float32": pa.float32(),
    "int64_list": pa.list_(pa.int64()),
    "float32_list": pa.list_(pa.float32()),
}


@dataclass(frozen=True)
class SnapshotPlan:
    """Which cutoffs to write: the aligned ones inside the data period, then the data end."""

    cutoffs: tuple[pd.Timestamp, ...]
    data_end: pd.Timestamp


@dataclass
class BuildReport:
    offline_dir: Path
    data_end: pd.Timestamp
    cutoffs: list[pd.Timestamp] = field(default_factory=list)
    written: list[pd.Timestamp] = field(default_factory=list)
    skipped: list[pd.Timestamp] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # per view, in the final snapshot
    n_events: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "offline_dir": str(self.offline_dir),
            "data_end": self.data_end.isoformat(),
            "n_events": self.n_events,
            "cutoffs": [c.isoformat() for c in self.cutoffs],
            "written": len(self.written),
            "skipped": len(self.skipped),
            "removed": self.removed,
            "final_snapshot_rows": self.rows,
        }


def data_end_of(events: pd.DataFrame) -> pd.Timestamp:
    """The final cutoff: the whole second after the last event (so the last event counts)."""
    last = as_utc(events[col.EVENT_TIME].max())
    return last.floor("s") + pd.Timedelta(seconds=1)


def plan_snapshots(first_event: pd.Timestamp, data_end: pd.Timestamp, freq: str = "1D") -> SnapshotPlan:
    """Cutoffs every ``freq`` counted back from the UTC midnight at or after ``data_end``, strictly after the
    first event, then ``data_end`` itself.

    Counting back from the end makes ``freq = <label_days>D`` hit exactly the cutoffs training uses (every
    ``label_days`` before the midnight after the last event), so ``recsys run`` writes 6 snapshots of a
    28-day log instead of 28; for a ``freq`` that divides a day the cutoffs are every such step from a
    midnight, as before. Raises UserInputError for an unparsable or non-positive ``freq``.
    """
    try:
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    except (ValueError, TypeError) as exc:
        raise UserInputError(f"snapshot frequency {freq!r} is not a pandas offset like 1D or 12h") from exc
    if step <= pd.Timedelta(0):
        raise UserInputError(f"snapshot frequency {freq!r} must be positive")
    first, end = as_utc(first_event), as_utc(data_end)
    anchor = end.ceil("D")
    n_steps = int((anchor - first) / step) + 1
    aligned = sorted(anchor - i * step for i in range(n_steps))
    cutoffs = [c for c in aligned if first < c < end] + [end]
    return SnapshotPlan(cutoffs=tuple(cutoffs), data_end=end)


def load_offline_events(events_path: Path, realtime_log_dir: Path | None = None) -> pd.DataFrame:
    """The batch event file plus every event pushed in real time since (sorted, exact duplicates dropped)."""
    events = load_events(events_path).events
    if realtime_log_dir is None:
        return events
    parts = sorted(Path(realtime_log_dir).glob("*.parquet"))
    if not parts:
        return events
    pushed = validate_events(pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)).events
    # A pushed event dated before the batch file starts, or in the future, is a client clock (or test) artefact:
    # kept, it would stretch the snapshot plan over years of daily cutoffs. Dropped and counted instead.
    pushed_times = pd.to_datetime(pushed[col.EVENT_TIME], utc=True)
    plausible = (pushed_times >= events[col.EVENT_TIME].min()) & (
        pushed_times <= pd.Timestamp.now(tz="UTC") + MAX_FUTURE_SKEW
    )
    if not plausible.all():
        log.warning("real-time log: %d event(s) outside the batch start .. now window ignored", int((~plausible).sum()))
        pushed = pushed[plausible.to_numpy()]
    combined = pd.concat([events, pushed], ignore_index=True)
    combined = combined[~combined.duplicated(keep="first")]
    return combined.sort_values(col.EVENT_TIME, kind="stable").reset_index(drop=True)


def feature_code_version() -> str:
    """Hash of the feature code: a change in the shared functions invalidates every snapshot."""
    digest = hashlib.sha256()
    for module in (feature_computation, feature_definitions):
        digest.update(Path(module.__file__ or "").read_bytes())
    return digest.hexdigest()[:16]


class EventFingerprints:
    """O(1) fingerprint of "all events strictly before t" via prefix sums of row hashes."""

    def __init__(self, events: pd.DataFrame) -> None:
        hashes = pd.util.hash_pandas_object(events[list(col.ALL_COLUMNS)], index=False).to_numpy(np.uint64)
        self._times = _utc_nanoseconds(events[col.EVENT_TIME])
        if len(self._times) > 1 and (np.diff(self._times) < 0).any():
            raise ValueError("events must be sorted by event_time")
        self._cumsum = np.cumsum(hashes, dtype=np.uint64)  # wraps modulo 2**64, which is fine for a checksum

    def before(self, cutoff: pd.Timestamp) -> str:
        n = int(np.searchsorted(self._times, as_utc(cutoff).value, side="left"))
        total = int(self._cumsum[n - 1]) if n else 0
        return f"{n}:{total:016x}"


def _utc_nanoseconds(times: pd.Series) -> np.ndarray:
    return times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]").view(np.int64)


def arrow_schema(view: str) -> pa.Schema:
    keys = [pa.field(k, pa.int64(), nullable=False) for k in ENTITY_JOIN_KEYS[view]]
    features = [pa.field(s.name, _ARROW_TYPES[s.dtype]) for s in fd.features_of(view)]
    return pa.schema([*keys, *features, pa.field(EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC"), nullable=False)])


def snapshot_table(tables: FeatureTables, view: str) -> pa.Table:
    """One view of ``tables`` as an Arrow table with keys, features and ``event_timestamp`` = cutoff."""
    frame = getattr(tables, view).reset_index()
    frame[EVENT_TIMESTAMP] = pd.Timestamp(tables.cutoff).floor("us")
    schema = arrow_schema(view)
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


def snapshot_file_name(cutoff: pd.Timestamp) -> str:
    return as_utc(cutoff).strftime("%Y%m%dT%H%M%SZ") + ".parquet"


def _write_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def read_manifest(offline_dir: Path) -> dict[str, object]:
    path = Path(offline_dir) / MANIFEST_NAME
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text()))


def build_snapshots(
    events: pd.DataFrame,
    offline_dir: Path,
    *,
    freq: str = "1D",
    force: bool = False,
    progress: Callable[[Sequence[pd.Timestamp]], Iterable[pd.Timestamp]] | None = None,
) -> BuildReport:
    """Write every planned snapshot whose events (or feature code) changed; remove stale ones.

    ``progress`` wraps the iteration over cutoffs (e.g. a progress bar). Raises UserInputError
    when there are no events.
    """
    if events.empty:
        raise UserInputError("no events to build feature snapshots from")
    offline_dir = Path(offline_dir)
    plan = plan_snapshots(events[col.EVENT_TIME].min(), data_end_of(events), freq)
    manifest = read_manifest(offline_dir)
    code_version = feature_code_version()
    previous = {str(k): str(v) for k, v in dict(manifest.get("snapshots") or {}).items()}  # type: ignore[call-overload]
    if manifest.get("code_version") != code_version or force:
        previous = {}
    fingerprints = EventFingerprints(events)
    report = BuildReport(offline_dir=offline_dir, data_end=plan.data_end, cutoffs=list(plan.cutoffs))
    report.n_events = len(events)

    current: dict[str, str] = {}
    iterate = progress(plan.cutoffs) if progress else plan.cutoffs
    for cutoff in iterate:
        name = snapshot_file_name(cutoff)
        fingerprint = fingerprints.before(cutoff)
        current[name] = fingerprint
        files = [offline_dir / view / name for view in fd.VIEWS]
        if previous.get(name) == fingerprint and all(f.exists() for f in files):
            report.skipped.append(cutoff)
            continue
        tables = compute_feature_tables(events, cutoff)
        for view, path in zip(fd.VIEWS, files, strict=True):
            _write_atomic(snapshot_table(tables, view), path)
        report.written.append(cutoff)

    for view in fd.VIEWS:
        for stale in sorted((offline_dir / view).glob("*.parquet")):
            if stale.name not in current:
                stale.unlink()
                report.removed.append(f"{view}/{stale.name}")
    final = snapshot_file_name(plan.data_end)
    report.rows = {view: pq.read_metadata(offline_dir / view / final).num_rows for view in fd.VIEWS}
    manifest = {
        "code_version": code_version,
        "freq": freq,
        "data_end": plan.data_end.isoformat(),
        "first_cutoff": plan.cutoffs[0].isoformat(),
        "cutoffs": [c.isoformat() for c in plan.cutoffs],
        "n_events": len(events),
        "snapshots": current,
    }
    (offline_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    return report


def snapshot_window(offline_dir: Path) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(first cutoff, data end) of the last build. Raises UserInputError if nothing was built."""
    manifest = read_manifest(offline_dir)
    if not manifest.get("data_end"):
        raise UserInputError(f"no offline snapshots in {offline_dir}; run `recsys features build` first")
    return pd.Timestamp(str(manifest["first_cutoff"])), pd.Timestamp(str(manifest["data_end"]))
