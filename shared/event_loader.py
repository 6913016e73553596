"""Load and validate an event log (CSV, CSV.gz or Parquet in the REES46 schema).

Every later stage trusts the frame returned here, so all checks live in one place:
required columns, parsable UTC timestamps, a known event-type vocabulary and integer ids.
Bad input raises :class:`EventDataError` with the file, the column and up to five offending
rows; recoverable problems (null ids, exact duplicates, optionally unknown event types) are
dropped and counted in a :class:`ValidationSummary`. What a real export carries and is kept — extra
columns, event types in mixed case, empty brand / category, missing sessions, zero prices, rows out of
time order, bot-like users with huge histories — is counted there too (``noted``), so a user sees what
the pipeline made of their file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shared import column_names as col
from shared.errors import EventDataError

MAX_EXAMPLES = 5
HEAVY_USER_EVENTS = 10_000
"""A user with more events than this in one log is reported (kept): in the public REES46 month the
heaviest users have tens of thousands of views, which is crawler-like, not a shopper."""
_SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
ID_COLUMNS = (col.PRODUCT_ID, col.USER_ID)
VALIDATED_MARKER = b"recsys.validated_events"
"""Parquet schema metadata of a file written by :func:`write_validated_events` (its summary, as json)."""


@dataclass
class ValidationSummary:
    """What happened to the rows of one events file."""

    source: str
    rows_read: int = 0
    rows_kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    noted: dict[str, int] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)

    def drop(self, reason: str, count: int) -> None:
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(count)

    def note(self, what: str, count: int) -> None:
        """Count rows (or users) that were kept but that the user should know about."""
        if count:
            self.noted[what] = self.noted.get(what, 0) + int(count)

    def lines(self) -> list[str]:
        out = [
            f"source: {self.source}",
            f"rows read: {self.rows_read:,}",
            f"rows kept: {self.rows_kept:,}",
        ]
        out += [f"dropped ({reason}): {count:,}" for reason, count in sorted(self.dropped.items())]
        out += [f"kept, noted ({what}): {count:,}" for what, count in sorted(self.noted.items())]
        if self.ignored_columns:
            out.append(f"columns ignored (not in the schema): {', '.join(self.ignored_columns)}")
        return out

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> ValidationSummary:
        """The summary :meth:`as_dict` wrote."""
        return cls(
            source=str(stored["source"]),
            rows_read=int(stored["rows_read"]),
            rows_kept=int(stored["rows_kept"]),
            dropped=dict(stored["dropped"]),
            noted=dict(stored["noted"]),
            ignored_columns=list(stored["ignored_columns"]),
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "dropped": dict(self.dropped),
            "noted": dict(self.noted),
            "ignored_columns": list(self.ignored_columns),
        }


@dataclass
class LoadedEvents:
    events: pd.DataFrame
    summary: ValidationSummary


def load_events(path: str | Path, *, drop_unknown_event_types: bool = False) -> LoadedEvents:
    """Read ``path`` (CSV, CSV.gz or Parquet) and return the validated, typed, time-sorted events.

    A file written by :func:`write_validated_events` is read as it is (its rows passed these checks
    when it was written; its summary is the one of that validation): 5-10x faster, half the memory.
    """
    path = Path(path)
    if not path.exists():
        raise EventDataError(f"{path}: file not found")
    if not path.is_file():
        raise EventDataError(f"{path}: not a file")
    validated = _read_validated(path)
    if validated is not None:
        return validated
    raw = _read_raw(path)
    return validate_events(raw, source=str(path), drop_unknown_event_types=drop_unknown_event_types)


def resolve_event_files(spec: str | Path) -> list[Path]:
    """The event files a user means: one file, every supported file of a directory, or a glob pattern
    (the public REES46 dataset ships one CSV per month), sorted by name. Raises when nothing matches."""
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.is_file())
        where = f"{path}: no event files in this directory"
    elif any(ch in text for ch in "*?["):
        anchor, pattern = (
            (Path(path.anchor), str(path.relative_to(path.anchor))) if path.is_absolute() else (Path("."), text)
        )
        candidates = sorted(p for p in anchor.glob(pattern) if p.is_file())
        where = f"{text}: no event files match this pattern"
    else:
        raise EventDataError(f"{path}: file not found")
    files = [p for p in candidates if p.name.lower().endswith(_SUPPORTED_SUFFIXES)]
    if not files:
        raise EventDataError(f"{where} (expected {', '.join(_SUPPORTED_SUFFIXES)})")
    return files


def load_event_files(spec: str | Path, *, drop_unknown_event_types: bool = False) -> LoadedEvents:
    """Like :func:`load_events` for a file, a directory or a glob: the files are read, joined and
    validated as one log (so the summary counts every file's rows)."""
    files = resolve_event_files(spec)
    if len(files) == 1:
        return load_events(files[0], drop_unknown_event_types=drop_unknown_event_types)
    raw = pd.concat([_read_raw(f) for f in files], ignore_index=True, sort=False)
    source = f"{spec} ({len(files)} files)"
    return validate_events(raw, source=source, drop_unknown_event_types=drop_unknown_event_types)


def write_validated_events(loaded: LoadedEvents, path: Path) -> Path:
    """The validated frame as Parquet, marked so that :func:`load_events` trusts it (written atomically)."""
    table = pa.Table.from_pandas(loaded.events, preserve_index=False)
    marker = json.dumps({"rows": len(loaded.events), "summary": loaded.summary.as_dict()}).encode()
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), VALIDATED_MARKER: marker})
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    pq.write_table(table, partial)
    os.replace(partial, path)
    return path


def _validated_file(path: Path) -> tuple[pq.ParquetFile, ValidationSummary] | None:
    """The Parquet file and stored summary of a file written by :func:`write_validated_events`, else None."""
    if not path.name.lower().endswith((".parquet", ".pq")):
        return None
    try:
        parquet = pq.ParquetFile(path)
    except Exception:  # not readable as Parquet: the general path reports it
        return None
    marker = (parquet.schema_arrow.metadata or {}).get(VALIDATED_MARKER)
    if marker is None or parquet.schema_arrow.names != list(col.ALL_COLUMNS):
        return None
    info = json.loads(marker)
    if info.get("rows") != parquet.metadata.num_rows:
        return None
    return parquet, ValidationSummary.from_dict(info["summary"])


def read_validated_summary(path: Path) -> ValidationSummary:
    """The validation summary stored in a validated copy (read from its metadata only)."""
    found = _validated_file(Path(path))
    if found is None:
        raise EventDataError(f"{path}: not a validated copy written by recsys")
    return found[1]


def _read_validated(path: Path) -> LoadedEvents | None:
    """The frame of a file written by :func:`write_validated_events`, or None for any other file."""
    found = _validated_file(path)
    if found is None:
        return None
    parquet, summary = found
    events = parquet.read().to_pandas(types_mapper=_arrow_strings, split_blocks=True, self_destruct=True)
    events[col.EVENT_TYPE] = events[col.EVENT_TYPE].cat.set_categories(list(col.EVENT_TYPES))
    events[col.CATEGORY_ID] = events[col.CATEGORY_ID].astype("Int64")
    return LoadedEvents(events=events, summary=summary)


def _read_raw(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pq.read_table(path).to_pandas(types_mapper=_arrow_strings)
        if name.endswith((".csv", ".csv.gz")):
            return pd.read_csv(path, dtype=col.TEXT_DTYPE, keep_default_na=True, na_values=[""])
    except (
        OSError,
        ValueError,
        UnicodeDecodeError,
        EOFError,
    ) as exc:  # pyarrow/zlib errors subclass these
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EventDataError(f"{path}: cannot read file ({first_line})") from exc
    except Exception as exc:  # pyarrow.ArrowInvalid and friends
        raise EventDataError(f"{path}: cannot read file ({type(exc).__name__}: {exc})") from exc
    raise EventDataError(f"{path}: unsupported file type; expected one of {', '.join(_SUPPORTED_SUFFIXES)}")


def _arrow_strings(arrow_type: pa.DataType) -> object:
    """Parquet text as Arrow-backed pandas strings (``column_names.TEXT_DTYPE``); other types as pandas reads them."""
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return pd.StringDtype("pyarrow")
    return None


def validate_events(
    raw: pd.DataFrame,
    *,
    source: str = "<frame>",
    drop_unknown_event_types: bool = False,
) -> LoadedEvents:
    """Validate an in-memory frame with the event columns; same rules as :func:`load_events`."""
    summary = ValidationSummary(source=source, rows_read=len(raw))
    missing = [c for c in col.REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise EventDataError(
            f"{source}: missing required column(s) {', '.join(missing)}; "
            f"found columns: {', '.join(map(str, raw.columns)) or '(none)'}"
        )
    frame = raw.reset_index(drop=True)
    out = pd.DataFrame(index=frame.index)
    summary.ignored_columns = [str(c) for c in frame.columns if c not in col.ALL_COLUMNS]

    out[col.EVENT_TIME] = _parse_timestamps(frame[col.EVENT_TIME], source)
    event_type, unknown_mask = _parse_event_types(frame[col.EVENT_TYPE], source, drop_unknown_event_types)
    out[col.EVENT_TYPE] = event_type
    exact = frame[col.EVENT_TYPE].isin(col.EVENT_TYPES).to_numpy(dtype=bool)
    summary.note("event_type case or spaces normalized", int((~unknown_mask.to_numpy() & ~exact).sum()))
    for id_column in ID_COLUMNS:
        out[id_column] = _parse_integer_ids(frame[id_column], id_column, source)

    out[col.CATEGORY_ID] = (
        _parse_integer_ids(frame[col.CATEGORY_ID], col.CATEGORY_ID, source)
        if col.CATEGORY_ID in frame
        else pd.array([pd.NA] * len(frame), dtype="Int64")
    )
    for text_column in (col.CATEGORY_CODE, col.BRAND, col.USER_SESSION):
        out[text_column] = (
            frame[text_column].astype(col.TEXT_DTYPE).str.strip().replace("", pd.NA)
            if text_column in frame
            else pd.Series(pd.NA, index=frame.index, dtype=col.TEXT_DTYPE)
        )
    out[col.PRICE] = (
        _parse_prices(frame[col.PRICE], source) if col.PRICE in frame else np.full(len(frame), np.nan, "float32")
    )

    keep = ~unknown_mask
    summary.drop("unknown event_type", int(unknown_mask.sum()))
    null_ids = out[list(ID_COLUMNS)].isna().any(axis=1) & keep
    summary.drop("null user_id or product_id", int(null_ids.sum()))
    keep &= ~null_ids
    out = out[keep]

    duplicated = out.duplicated(keep="first")
    summary.drop("exact duplicate", int(duplicated.sum()))
    out = out[~duplicated]
    _note_kept_quirks(summary, out)

    for id_column in ID_COLUMNS:
        out[id_column] = out[id_column].astype("int64")
    out = out.sort_values(col.EVENT_TIME, kind="stable").reset_index(drop=True)
    out = out[list(col.ALL_COLUMNS)]
    summary.rows_kept = len(out)
    return LoadedEvents(events=out, summary=summary)


def _note_kept_quirks(summary: ValidationSummary, out: pd.DataFrame) -> None:
    """Count what is kept as is but worth knowing (see the module docstring)."""
    times = out[col.EVENT_TIME]
    summary.note("rows out of time order (sorted)", int((times.diff() < pd.Timedelta(0)).sum()))
    summary.note("user_session missing", int(out[col.USER_SESSION].isna().sum()))
    summary.note("brand empty", int(out[col.BRAND].isna().sum()))
    summary.note("category_code empty", int(out[col.CATEGORY_CODE].isna().sum()))
    prices = out[col.PRICE]
    summary.note("price 0", int((prices == 0).sum()))
    summary.note("price missing", int(np.isnan(prices.to_numpy(dtype="float64")).sum()))
    per_user = out[col.USER_ID].value_counts()
    heavy = per_user[per_user > HEAVY_USER_EVENTS]
    summary.note(f"users with > {HEAVY_USER_EVENTS:,} events (likely bots)", len(heavy))
    summary.note(f"events of users with > {HEAVY_USER_EVENTS:,} events", int(heavy.sum()))


def _examples(values: pd.Series, mask: pd.Series | np.ndarray) -> str:
    bad = values[np.asarray(mask)].head(MAX_EXAMPLES)
    return ", ".join(f"row {int(i) + 1}: {v!r}" for i, v in bad.items())


def _parse_timestamps(values: pd.Series, source: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
    else:
        text = values.astype("string").str.strip().str.replace(r"\s*UTC$", "", regex=True)
        parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    bad = parsed.isna()
    if bad.any():
        raise EventDataError(
            f"{source}: column {col.EVENT_TIME}: {int(bad.sum()):,} unparsable timestamp(s) "
            f"(expected '2019-10-01 00:00:00 UTC' or ISO 8601): {_examples(values, bad)}"
        )
    return parsed.astype("datetime64[ns, UTC]")


def _parse_event_types(values: pd.Series, source: str, drop_unknown: bool) -> tuple[pd.Series, pd.Series]:
    text = values.astype(col.TEXT_DTYPE).str.strip().str.lower()
    unknown = ~text.isin(col.EVENT_TYPES) | text.isna()
    unknown = unknown.fillna(True).astype(bool)
    if unknown.any() and not drop_unknown:
        raise EventDataError(
            f"{source}: column {col.EVENT_TYPE}: {int(unknown.sum()):,} row(s) with unknown event type "
            f"(allowed: {', '.join(col.EVENT_TYPES)}; use --drop-unknown-event-types to drop them): "
            f"{_examples(values, unknown)}"
        )
    categorical = pd.Categorical(text.where(~unknown), categories=list(col.EVENT_TYPES))
    return pd.Series(categorical, index=values.index), unknown


def _parse_integer_ids(values: pd.Series, column: str, source: str) -> pd.Series:
    if pd.api.types.is_integer_dtype(values):
        return values.astype("Int64")
    text = values.astype("string").str.strip().replace("", pd.NA)
    numbers = pd.to_numeric(text, errors="coerce")
    not_integer = (text.notna() & (numbers.isna() | (numbers != np.floor(numbers)))).fillna(False)
    if not_integer.any():
        raise EventDataError(
            f"{source}: column {column}: {int(not_integer.sum()):,} non-integer id(s): {_examples(values, not_integer)}"
        )
    # Parse the text exactly: float64 would round ids above 2**53 (REES46 category ids are ~2e18).
    return text.astype("Int64")


def _parse_prices(values: pd.Series, source: str) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(values):
        return values.astype("float32").to_numpy()
    text = values.astype("string").str.strip().replace("", pd.NA)
    numbers = pd.to_numeric(text, errors="coerce")
    bad = (text.notna() & numbers.isna()).fillna(False)
    if bad.any():
        raise EventDataError(
            f"{source}: column {col.PRICE}: {int(bad.sum()):,} non-numeric price(s): {_examples(values, bad)}"
        )
    return numbers.astype("float32").to_numpy()


def summary_counts(events: pd.DataFrame) -> Mapping[str, int]:
    """Headline counts of a validated frame (for printing)."""
    counts = events[col.EVENT_TYPE].value_counts()
    return {
        "events": len(events),
        "users": int(events[col.USER_ID].nunique()),
        "products": int(events[col.PRODUCT_ID].nunique()),
        **{f"{t}s": int(counts.get(t, 0)) for t in col.EVENT_TYPES},
    }
