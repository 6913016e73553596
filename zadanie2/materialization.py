"""Apply the feature repository and materialize the offline snapshots into the online store.

``apply`` registers the objects built from the shared registry (the generated yaml is rewritten
first, for the ``feast`` CLI). ``materialize`` loads the newest snapshot row of every entity up
to the data end of the last build (that is the final snapshot) into SQLite or Redis; with
``incremental`` it continues from each view's last materialized end. Into Redis, the final snapshot is
written by :mod:`zadanie2.redis_bulk_writer` (Feast's bytes, column at a time) unless
``redis_bulk_load`` is off. A report with timings is written to
``artifacts/features/materialization_<store>.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.parquet as pq

from shared import feature_definitions as fd
from zadanie2.feature_repo.feature_views import build_feature_objects
from zadanie2.feature_store_config import open_feature_store, write_feature_store_yaml
from zadanie2.offline_snapshots import snapshot_file_name, snapshot_window
from zadanie2.settings import FeatureStoreSettings

if TYPE_CHECKING:
    from zadanie2.redis_bulk_writer import RedisBulkWriter


@dataclass
class MaterializationReport:
    online_store: str
    mode: str  # full | incremental
    start: str
    end: str
    seconds_total: float = 0.0
    seconds_per_view: dict[str, float] = field(default_factory=dict)
    writer_per_view: dict[str, str] = field(default_factory=dict)  # feast | redis_bulk
    rows_in_final_snapshot: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def apply_feature_repo(settings: FeatureStoreSettings, store: Any | None = None) -> list[str]:
    """Register entities, sources, views and services; returns the names applied."""
    write_feature_store_yaml(settings)
    store = store or open_feature_store(settings)
    objects = build_feature_objects(settings.paths()["offline"])
    store.apply(objects.all())
    return [obj.name for obj in objects.all()]


def _to_datetime(stamp: pd.Timestamp) -> datetime:
    return stamp.to_pydatetime()


def materialize_views(
    settings: FeatureStoreSettings, *, incremental: bool = False, store: Any | None = None
) -> MaterializationReport:
    """Load the snapshots into the online store up to the data end of the last build.

    Full mode covers [final snapshot, data end]: every snapshot holds each entity's state from all
    events before its cutoff, so the final one alone is the newest row of every entity and Feast reads
    one file per view instead of every snapshot (what bounds Feast's memory is the write batch size in
    the yaml, see ``online_write_batch_rows``). Incremental mode starts each view at its last
    materialized end; a view never materialized gets the final snapshot (Feast would otherwise
    start at "now - 1 year" for a view without TTL and miss older data).
    """
    first_cutoff, data_end = snapshot_window(settings.paths()["offline"])
    store = store or open_feature_store(settings)
    report = MaterializationReport(
        online_store=settings.online_store_kind,
        mode="incremental" if incremental else "full",
        start=(data_end if not incremental else first_cutoff).isoformat(),
        end=data_end.isoformat(),
    )
    previous_ends = materialization_ends(store) if incremental else {}
    bulk_writer = _bulk_writer(settings) if settings.online_store_kind == "redis" and settings.redis_bulk_load else None
    started = time.perf_counter()
    try:
        for view in fd.VIEWS:
            view_started = time.perf_counter()
            previous_end = previous_ends.get(view)
            if previous_end is not None and previous_end >= data_end:
                pass  # already materialized up to the data end: nothing new for this view
            elif previous_end is not None:
                store.materialize_incremental(end_date=_to_datetime(data_end), feature_views=[view])
            elif bulk_writer is not None:
                _bulk_load_view(bulk_writer, store, settings.paths()["offline"], view, data_end)
                report.writer_per_view[view] = "redis_bulk"
            else:  # Feast's window is inclusive at both ends: exactly the final snapshot
                end = _to_datetime(data_end)
                store.materialize(start_date=end, end_date=end, feature_views=[view])
            report.writer_per_view.setdefault(view, "feast")
            report.seconds_per_view[view] = round(time.perf_counter() - view_started, 3)
    finally:
        if bulk_writer is not None:
            bulk_writer.close()
    report.seconds_total = round(time.perf_counter() - started, 3)
    report.rows_in_final_snapshot = _final_snapshot_rows(settings.paths()["offline"])
    write_report(settings, report)
    return report


def _bulk_writer(settings: FeatureStoreSettings) -> RedisBulkWriter:
    from zadanie2.feature_store_config import ENTITY_KEY_SERIALIZATION_VERSION
    from zadanie2.redis_bulk_writer import RedisBulkWriter

    return RedisBulkWriter(str(settings.redis_url), settings.project, ENTITY_KEY_SERIALIZATION_VERSION)


def _bulk_load_view(writer: RedisBulkWriter, store: Any, offline_dir: Path, view: str, data_end: pd.Timestamp) -> None:
    """The final snapshot of ``view`` written column at a time (zadanie2.redis_bulk_writer), with a progress bar."""
    from shared.console import console, progress_bar
    from zadanie2.redis_bulk_writer import record_materialization

    path = Path(offline_dir) / view / snapshot_file_name(data_end)
    rows = pq.read_metadata(path).num_rows
    with progress_bar(f"{view} -> Redis", total=rows) as advance:
        stats = writer.write_file(view, path, progress=advance)
    record_materialization(store, view, _to_datetime(data_end), _to_datetime(data_end))
    console.print(
        f"  {view}: {stats.written:,} of {stats.rows:,} rows written in {stats.seconds:.1f} s "
        f"({stats.rows_per_second:,.0f} rows/s; {stats.skipped_not_newer:,} not newer than the stored row)"
    )


def _final_snapshot_rows(offline_dir: Path) -> dict[str, int]:
    final = snapshot_file_name(snapshot_window(offline_dir)[1])
    return {view: pq.read_metadata(Path(offline_dir) / view / final).num_rows for view in fd.VIEWS}


def report_path(settings: FeatureStoreSettings) -> Path:
    return settings.paths()["features"] / f"materialization_{settings.online_store_kind}.json"


def write_report(settings: FeatureStoreSettings, report: MaterializationReport) -> Path:
    path = report_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.as_dict(), indent=2))
    return path


def materialization_ends(store: Any) -> dict[str, pd.Timestamp | None]:
    """The end of each view's latest materialization (UTC), None for a view never materialized."""
    ends: dict[str, pd.Timestamp | None] = {}
    for view in fd.VIEWS:
        end = store.get_feature_view(view).most_recent_end_time
        stamp = None if end is None else pd.Timestamp(end)
        ends[view] = None if stamp is None else (stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC"))
    return ends


def materialized_until(store: Any) -> pd.Timestamp:
    """The end of the latest materialization (minimum over the views, so every view has it).

    Raises UserInputError when a view was never materialized.
    """
    from shared.errors import UserInputError

    ends = materialization_ends(store)
    missing = [view for view, end in ends.items() if end is None]
    if missing:
        raise UserInputError(f"feature view {missing[0]} was never materialized; run `recsys features materialize`")
    return min(end for end in ends.values() if end is not None)
