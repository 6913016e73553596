"""Stage 1 of the recommender: a few hundred candidate products per user from cheap, precomputed sources.

Sources (each candidate is tagged with the first source that produced it):

* ``recent``           — the user's own recently touched products (session context first). In
  e-commerce logs a large share of next interactions are re-visits, so they must reach the ranker.
* ``covisitation``     — item-to-item: products seen in the same sessions as the user's recent /
  session products. Weights: time-decayed (``half_life_days``) count of sessions holding both,
  the neighbour's event type weighting carts/purchases higher; each product keeps its top
  ``neighbors_per_product`` neighbours, scores normalised to 1.0 for the best neighbour.
* ``category_popular`` — the most popular products of the context category and the user's top
  categories, interleaved by category rank (1st category twice as often as the 2nd, ...).
* ``trending``         — products whose recent event rate grew most (``PopularityModel.trending``).
* ``popular``          — time-decayed global popularity; fills whatever is left.

Everything is computed from events strictly before the cutoff. The index is saved as plain
arrays (npz) plus json metadata — no pickle — and also carries the popularity lists, so the
service rebuilds the cold-start fallback from the same files (:meth:`CandidateIndex.popularity`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from shared import column_names as col
from shared.errors import UserInputError
from shared.feature_computation import DAY, as_utc, events_before
from shared.popularity import PopularityModel, RankedList

SOURCE_RECENT: Final = "recent"
SOURCE_COVISITATION: Final = "covisitation"
SOURCE_CATEGORY_POPULAR: Final = "category_popular"
SOURCE_TRENDING: Final = "trending"
SOURCE_POPULAR: Final = "popular"
SOURCES: Final = (SOURCE_RECENT, SOURCE_COVISITATION, SOURCE_CATEGORY_POPULAR, SOURCE_TRENDING, SOURCE_POPULAR)
FILL_ORDER: Final = (SOURCE_COVISITATION, SOURCE_CATEGORY_POPULAR, SOURCE_POPULAR, SOURCE_TRENDING, SOURCE_RECENT)

ARRAYS_FILE: Final = "candidate_index.npz"
META_FILE: Final = "candidate_index.json"
FORMAT_VERSION: Final = 1

COVISIT_EVENT_WEIGHTS: Final = {col.VIEW: 1.0, col.CART: 2.0, col.REMOVE_FROM_CART: 0.5, col.PURCHASE: 3.0}


@dataclass(frozen=True)
class CandidateConfig:
    """How the index is built and how the sources share the ``n`` candidate slots.

    The shares are of ``n`` (0..1); whatever a source cannot fill, and the rest after all shares,
    goes to the next sources and finally to ``popular``.
    """

    neighbors_per_product: int = 40
    max_session_products: int = 30  # last distinct products of a session used for co-visitation pairs
    session_gap_minutes: float = 30.0  # sessions derived from time gaps when user_session is missing
    half_life_days: float = 14.0  # decay of a session's weight in the co-visitation counts
    popularity_half_life_days: float = 7.0
    recent_seeds: int = 10  # recent products whose neighbours are looked up
    recent_share: float = 0.15
    covisitation_share: float = 0.3
    category_share: float = 0.5
    trending_share: float = 0.05

    def __post_init__(self) -> None:
        shares = (self.recent_share, self.covisitation_share, self.category_share, self.trending_share)
        if any(s < 0 for s in shares) or sum(shares) > 1.0 + 1e-9:
            raise ValueError("candidate source shares must be >= 0 and sum to at most 1")
        if self.neighbors_per_product <= 0 or self.max_session_products < 2:
            raise ValueError("neighbors_per_product must be > 0 and max_session_products >= 2")


@dataclass(frozen=True, slots=True)
class Candidate:
    product_id: int
    source: str


@dataclass
class CandidateIndex:
    """Precomputed candidate sources as of ``cutoff``; :meth:`candidates` is cheap (~0.1-0.5 ms)."""

    cutoff: pd.Timestamp
    config: CandidateConfig
    popularity: PopularityModel
    covisit_keys: np.ndarray  # int64 product ids with neighbours, sorted
    covisit_ptr: np.ndarray  # int64 offsets into the neighbour arrays, len(keys) + 1
    neighbor_ids: np.ndarray  # int64
    neighbor_scores: np.ndarray  # float32, 1.0 for each product's best neighbour
    _row_of: dict[int, int] = field(default_factory=dict, repr=False)
    _category_arrays: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self._row_of:
            self._row_of = {int(p): i for i, p in enumerate(self.covisit_keys.tolist())}
        pairs = np.array(sorted(self.popularity.product_category.items()), dtype=np.int64).reshape(-1, 2)
        self._category_arrays = (pairs[:, 0].copy(), pairs[:, 1].copy())

    # --- building -------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        events: pd.DataFrame,
        cutoff: str | pd.Timestamp,
        config: CandidateConfig | None = None,
        *,
        popularity: PopularityModel | None = None,
    ) -> CandidateIndex:
        """Build every source from events strictly before ``cutoff`` (pass ``popularity`` to reuse one)."""
        config = config or CandidateConfig()
        cutoff = as_utc(cutoff)
        ev = events_before(events, cutoff)
        if popularity is None:
            popularity = PopularityModel.fit(ev, cutoff, half_life_days=config.popularity_half_life_days)
        keys, ptr, ids, scores = covisitation_neighbors(ev, cutoff, config)
        return cls(cutoff, config, popularity, keys, ptr, ids, scores)

    # --- querying -------------------------------------------------------------------------------

    def similar(self, product_id: int, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Co-visitation neighbours of one product (ids, normalised scores), best first."""
        row = self._row_of.get(int(product_id))
        if row is None:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        start, end = self.covisit_ptr[row], self.covisit_ptr[row + 1]
        if k is not None:
            end = min(end, start + k)
        return self.neighbor_ids[start:end], self.neighbor_scores[start:end]

    def category_of(self, product_id: int) -> int | None:
        return self.popularity.product_category.get(int(product_id))

    def source_lists(
        self,
        recent_product_ids: Sequence[int],
        top_category_ids: Sequence[int],
        n: int,
        *,
        context_product_ids: Sequence[int] = (),
        context_category_id: int | None = None,
    ) -> dict[str, list[int]]:
        """Each source's own ordered list (up to ``n`` products, unfiltered)."""
        seeds = _dedupe([*context_product_ids, *recent_product_ids])
        return {
            SOURCE_RECENT: seeds[:n],
            SOURCE_COVISITATION: self._covisitation_list(
                seeds[: self.config.recent_seeds + len(context_product_ids)], n
            ),
            SOURCE_CATEGORY_POPULAR: self._category_list(
                _dedupe([c for c in (context_category_id, *top_category_ids) if c is not None and c >= 0]), n
            ),
            SOURCE_TRENDING: self.popularity.trending_list.product_ids[:n].tolist(),
            SOURCE_POPULAR: self.popularity.popular.product_ids[:n].tolist(),
        }

    def candidates(
        self,
        recent_product_ids: Sequence[int],
        top_category_ids: Sequence[int],
        n: int,
        *,
        context_product_ids: Sequence[int] = (),
        context_category_id: int | None = None,
        exclude: Iterable[int] = (),
        sources: Sequence[str] = SOURCES,
    ) -> list[Candidate]:
        """Up to ``n`` distinct candidates, none in ``exclude``, merged from ``sources`` by their shares.

        ``recent_product_ids``: the user's recent products, newest first (user_stats); ``top_category_ids``:
        the user's top categories, best first; ``context_*``: what the current request is about
        (session products newest first, category page). Deterministic for equal inputs.
        """
        ids, tags = self.merged(
            recent_product_ids,
            top_category_ids,
            n,
            context_product_ids=context_product_ids,
            context_category_id=context_category_id,
            exclude=exclude,
            sources=sources,
        )
        return [Candidate(p, s) for p, s in zip(ids, tags, strict=True)]

    def merged(
        self,
        recent_product_ids: Sequence[int],
        top_category_ids: Sequence[int],
        n: int,
        *,
        context_product_ids: Sequence[int] = (),
        context_category_id: int | None = None,
        exclude: Iterable[int] = (),
        sources: Sequence[str] = SOURCES,
    ) -> tuple[list[int], list[str]]:
        """:meth:`candidates` as two parallel lists (product ids, source tags) — the fast path for serving.

        Each source first takes ``round(n * share)`` slots (popular: none); then the slots left are
        filled in ``FILL_ORDER``, each source continuing where it stopped.
        """
        if n <= 0:
            return [], []
        active = [s for s in SOURCES if s in sources]
        if not active:
            raise ValueError(f"no known source in {sources!r}; known: {SOURCES}")
        seen = {int(p) for p in exclude}
        lists = self.source_lists(
            recent_product_ids,
            top_category_ids,
            n + len(seen) + 20,  # long enough to fill n even when many products are excluded
            context_product_ids=context_product_ids,
            context_category_id=context_category_id,
        )
        cfg = self.config
        shares = {
            SOURCE_RECENT: cfg.recent_share,
            SOURCE_COVISITATION: cfg.covisitation_share,
            SOURCE_CATEGORY_POPULAR: cfg.category_share,
            SOURCE_TRENDING: cfg.trending_share,
        }
        out_ids: list[int] = []
        out_tags: list[str] = []
        positions = dict.fromkeys(active, 0)

        def take(source: str, limit: int) -> None:
            items, pos, end = lists[source], positions[source], len(lists[source])
            room = min(limit, n - len(out_ids))
            while room > 0 and pos < end:
                product = items[pos]
                pos += 1
                if product not in seen:
                    seen.add(product)
                    out_ids.append(product)
                    out_tags.append(source)
                    room -= 1
            positions[source] = pos

        for source in active:
            if source != SOURCE_POPULAR:
                take(source, round(n * shares[source]))
        for source in FILL_ORDER:  # slots a source could not fill, and the rest, in this order
            if source in active:
                take(source, n - len(out_ids))
        return out_ids, out_tags

    def categories_of(self, product_ids: np.ndarray) -> np.ndarray:
        """Category id of each product as int64 (-1 when unknown), vectorised."""
        keys, values = self._category_arrays
        if len(keys) == 0:
            return np.full(len(product_ids), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(keys, product_ids), len(keys) - 1)
        return np.where(keys[pos] == product_ids, values[pos], -1).astype(np.int64)

    def _covisitation_list(self, seeds: Sequence[int], n: int) -> list[int]:
        """Neighbours of the seeds, each seed weighted 0.8**position (newest = 1.0), summed."""
        if not seeds:
            return []
        id_parts, score_parts = [], []
        for position, seed in enumerate(seeds):
            ids, scores = self.similar(seed)
            if len(ids):
                id_parts.append(ids)
                score_parts.append(scores * (0.8**position))
        if not id_parts:
            return []
        ids = np.concatenate(id_parts)
        scores = np.concatenate(score_parts).astype(np.float64)
        order, first = stable_groups(ids)
        unique = ids[order][first]
        # summed in the ids' original order within each group (stable sort), as np.unique's inverse would
        totals = np.bincount(np.cumsum(first) - 1, weights=scores[order], minlength=len(unique))
        order = np.lexsort((unique, -totals))[:n]  # score desc, then product id asc
        return unique[order].tolist()

    def _category_list(self, categories: Sequence[int], n: int) -> list[int]:
        """Category-popular products, category ``i`` taking slots at rate 1/(i+1)."""
        lists = [self.popularity.by_category[c].product_ids[:n] for c in categories if c in self.popularity.by_category]
        if not lists:
            return []
        priority = np.concatenate([(np.arange(len(ids)) + 1.0) * (i + 1) for i, ids in enumerate(lists)])
        ordered = np.concatenate(lists)[np.argsort(priority, kind="stable")]
        order, first = stable_groups(ordered)
        if not first.all():  # a product listed twice keeps its first place
            ordered = ordered[np.sort(order[first])]
        return ordered[:n].tolist()

    # --- persistence ----------------------------------------------------------------------------

    def save(self, folder: Path) -> Path:
        """Write ``candidate_index.npz`` (arrays) and ``candidate_index.json`` (cutoff, config, sizes)."""
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {
            "covisit_keys": self.covisit_keys,
            "covisit_ptr": self.covisit_ptr,
            "neighbor_ids": self.neighbor_ids,
            "neighbor_scores": self.neighbor_scores,
            **popularity_to_arrays(self.popularity),
        }
        np.savez_compressed(folder / ARRAYS_FILE, **arrays)  # type: ignore[arg-type]
        meta = {
            "format_version": FORMAT_VERSION,
            "cutoff": self.cutoff.isoformat(),
            "popularity_half_life_days": self.popularity.half_life_days,
            "config": asdict(self.config),
            "n_products_with_neighbors": len(self.covisit_keys),
            "n_neighbor_pairs": len(self.neighbor_ids),
            "n_popular": len(self.popularity.popular.product_ids),
            "n_categories": len(self.popularity.by_category),
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return folder

    @classmethod
    def load(cls, folder: Path) -> CandidateIndex:
        """Read a folder written by :meth:`save`; ``UserInputError`` when missing or unreadable."""
        arrays_path, meta_path = folder / ARRAYS_FILE, folder / META_FILE
        for path in (arrays_path, meta_path):
            if not path.is_file():
                raise UserInputError(f"{path}: candidate index file not found (run `recsys train` first)")
        try:
            meta = json.loads(meta_path.read_text())
            with np.load(arrays_path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
            cutoff = pd.Timestamp(meta["cutoff"])
            config = CandidateConfig(**meta["config"])
            popularity = popularity_from_arrays(arrays, cutoff, float(meta["popularity_half_life_days"]))
            return cls(
                cutoff,
                config,
                popularity,
                arrays["covisit_keys"],
                arrays["covisit_ptr"],
                arrays["neighbor_ids"],
                arrays["neighbor_scores"],
            )
        except (KeyError, ValueError, TypeError, OSError) as exc:
            raise UserInputError(f"{folder}: unreadable candidate index ({exc})") from exc


# --- co-visitation ------------------------------------------------------------------------------


def session_codes(events: pd.DataFrame, gap_minutes: float) -> np.ndarray:
    """An int64 session code per event: ``user_session`` when present, else the user's time-gap sessions."""
    n = len(events)
    codes = np.full(n, -1, dtype=np.int64)
    session = events[col.USER_SESSION]
    present = session.notna().to_numpy()
    if present.any():
        codes[present] = pd.factorize(session[present])[0]
    missing = ~present
    if missing.any():
        sub = events.loc[missing, [col.USER_ID, col.EVENT_TIME]]
        order = np.lexsort((_nanoseconds(sub[col.EVENT_TIME]), sub[col.USER_ID].to_numpy()))
        users = sub[col.USER_ID].to_numpy()[order]
        times = _nanoseconds(sub[col.EVENT_TIME])[order]
        new_session = np.ones(len(order), dtype=bool)
        new_session[1:] = (users[1:] != users[:-1]) | (np.diff(times) > gap_minutes * 60e9)
        derived = np.empty(len(order), dtype=np.int64)
        derived[order] = np.cumsum(new_session) - 1
        codes[missing] = derived + (codes.max() + 1)
    return codes


WEIGHT_QUANTUM: Final = 2.0**-32
"""Co-visitation weights are summed as integers of this unit (exact, so the sum does not depend on the
order DuckDB's threads add them in; 2.3e-10 is far below any difference that matters to a ranking)."""

_COVISITATION_SQL: Final = """
WITH items AS (  -- one row per (session, product): its last time, strongest event, first appearance
    SELECT s, p, max(t) AS t, max(w) AS w, min(i) AS first FROM ev GROUP BY s, p
), ranked AS (  -- the session's last distinct products, newest first
    SELECT s, p, t, w, row_number() OVER (PARTITION BY s ORDER BY t DESC, first) AS rank FROM items
), kept AS (
    SELECT s, p, w, max(t) OVER (PARTITION BY s) AS session_t, count(*) OVER (PARTITION BY s) AS size
    FROM ranked WHERE rank <= $max_session_products
), weighted AS (
    SELECT s, p, w, pow(0.5, ($cutoff_ns - session_t) / $day_ns / $half_life_days) AS decay
    FROM kept WHERE size >= 2
), pairs AS (
    SELECT l.p AS a, r.p AS b, sum(CAST(round(l.decay * r.w / $quantum) AS BIGINT)) AS q
    FROM weighted l JOIN weighted r ON l.s = r.s AND l.p <> r.p
    GROUP BY l.p, r.p
), best AS (
    SELECT a, b, q, row_number() OVER (PARTITION BY a ORDER BY q DESC, b) AS rank FROM pairs
)
SELECT a, b, CAST(q AS DOUBLE) AS q FROM best WHERE rank <= $neighbors ORDER BY a, rank
"""


def covisitation_neighbors(
    events: pd.DataFrame, cutoff: pd.Timestamp, config: CandidateConfig, *, memory_limit: str = "4GB"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top co-visited products per product as CSR arrays (keys, ptr, neighbour ids, scores).

    Pairs come from distinct products of one session (its last ``max_session_products``); a pair's
    weight is the session's decay ``0.5 ** (age_days / half_life_days)`` times the neighbour's
    strongest event weight in that session (view 1, cart 2, purchase 3). Neighbours are ordered by
    weight, then id. Counted by DuckDB (multithreaded, spilling past ``memory_limit``): the session
    self-join has ~70 rows per session, 160 M for a 20 M-event log, which pandas would hold in memory.
    """
    empty = (np.empty(0, np.int64), np.zeros(1, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))
    if events.empty:
        return empty
    import tempfile

    import duckdb

    ev = pd.DataFrame(
        {
            "s": session_codes(events, config.session_gap_minutes),
            "p": events[col.PRODUCT_ID].to_numpy(dtype=np.int64),
            "t": _nanoseconds(events[col.EVENT_TIME]),
            "w": events[col.EVENT_TYPE].astype(str).map(COVISIT_EVENT_WEIGHTS).fillna(1.0).to_numpy(np.float64),
            "i": np.arange(len(events), dtype=np.int64),
        }
    )
    with tempfile.TemporaryDirectory(prefix="recsys_covisit_") as spill, duckdb.connect() as db:
        db.execute(f"SET memory_limit = '{memory_limit}'")
        db.execute(f"SET temp_directory = '{spill}'")
        db.register("ev", ev)
        table = db.execute(
            _COVISITATION_SQL,
            {
                "max_session_products": config.max_session_products,
                "cutoff_ns": float(cutoff.value),
                "day_ns": float(DAY.value),
                "half_life_days": float(config.half_life_days),
                "quantum": WEIGHT_QUANTUM,
                "neighbors": config.neighbors_per_product,
            },
        ).fetchnumpy()
    del ev
    a, b, q = (np.asarray(table[name]) for name in ("a", "b", "q"))
    if len(a) == 0:
        return empty
    keys, starts, counts = np.unique(a, return_index=True, return_counts=True)
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    scores = (q / np.repeat(q[starts], counts)).astype(np.float32)  # the first of each product is its best
    return keys.astype(np.int64), ptr, b.astype(np.int64), scores


# --- popularity model persistence (plain arrays) ----------------------------------------------------


def popularity_to_arrays(model: PopularityModel) -> dict[str, np.ndarray]:
    categories = sorted(model.by_category)
    lists = [model.by_category[c] for c in categories]
    sizes = [len(r.product_ids) for r in lists]
    product_category = np.array(sorted(model.product_category.items()), dtype=np.int64).reshape(-1, 2)
    return {
        "popular_ids": model.popular.product_ids,
        "popular_scores": model.popular.scores,
        "trending_ids": model.trending_list.product_ids,
        "trending_scores": model.trending_list.scores,
        "category_keys": np.asarray(categories, dtype=np.int64),
        "category_ptr": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        "category_product_ids": np.concatenate([r.product_ids for r in lists]) if lists else np.empty(0, np.int64),
        "category_scores": np.concatenate([r.scores for r in lists]) if lists else np.empty(0),
        "product_category": product_category,
    }


def popularity_from_arrays(arrays: dict[str, np.ndarray], cutoff: pd.Timestamp, half_life: float) -> PopularityModel:
    ptr = arrays["category_ptr"]
    by_category = {
        int(c): RankedList(
            arrays["category_product_ids"][ptr[i] : ptr[i + 1]], arrays["category_scores"][ptr[i] : ptr[i + 1]]
        )
        for i, c in enumerate(arrays["category_keys"].tolist())
    }
    pairs = arrays["product_category"]
    return PopularityModel(
        cutoff=as_utc(cutoff),
        half_life_days=half_life,
        popular=RankedList(arrays["popular_ids"], arrays["popular_scores"]),
        trending_list=RankedList(arrays["trending_ids"], arrays["trending_scores"]),
        by_category=by_category,
        product_category={int(p): int(c) for p, c in pairs.tolist()},
    )


def _nanoseconds(times: pd.Series) -> np.ndarray:
    """UTC timestamps as int64 nanoseconds since the epoch."""
    return np.asarray(times.dt.as_unit("ns").array.asi8, dtype=np.int64)


def stable_groups(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A stable sort of ``values`` and the mask of each equal run's first element in sorted order.

    What ``np.unique(return_index/return_inverse)`` computes, without its overhead: for the few hundred
    ids of one request it is ~10x the cost of the sort itself (numpy 2).
    """
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first = np.empty(len(ordered), dtype=bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    return order, first


def _dedupe(values: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(int(v) for v in values))


# --- recall of the candidate stage --------------------------------------------------------------------


@dataclass(frozen=True)
class RecallRow:
    source: str  # a source alone, "merged" (all sources), or "merged:<source>" (share of merged hits by tag)
    n: int
    recall: float
    hits: int
    relevant_pairs: int
    n_users: int


def candidate_recall(
    index: CandidateIndex,
    user_stats: pd.DataFrame,
    relevant: dict[int, set[int]],
    n: int,
) -> list[RecallRow]:
    """Recall@n of each source alone and of the merged set over the users in ``relevant``.

    ``relevant`` maps user -> products interacted with in the window after the cutoff; users
    without a row in ``user_stats`` (cold) are skipped — they get the cold-start list instead.
    Recall = hits / relevant (user, product) pairs, over all pairs of the evaluated users.
    """
    users = [u for u in relevant if u in user_stats.index]
    rows = user_stats.loc[users, ["user_recent_product_ids", "user_top_category_ids", "user_purchased_product_ids"]]
    total = sum(len(relevant[u]) for u in users)
    hits = dict.fromkeys((*SOURCES, "merged"), 0)
    tag_hits = dict.fromkeys(SOURCES, 0)
    for user, recent, top_categories, purchased in rows.itertuples(index=True, name=None):
        wanted = relevant[user]
        for source in SOURCES:
            found = index.candidates(recent, top_categories, n, exclude=purchased, sources=(source,))
            hits[source] += sum(1 for c in found if c.product_id in wanted)
        for c in index.candidates(recent, top_categories, n, exclude=purchased):
            if c.product_id in wanted:
                hits["merged"] += 1
                tag_hits[c.source] += 1
    out = [RecallRow(s, n, hits[s] / total if total else float("nan"), hits[s], total, len(users)) for s in hits]
    out += [
        RecallRow(f"merged:{s}", n, tag_hits[s] / total if total else float("nan"), tag_hits[s], total, len(users))
        for s in SOURCES
    ]
    return out
