"""The pure parts of the simulated A/B test: who visits when, how they click, which arm they are in.

The simulated shoppers are the generator's ground truth (``shared.data_generator.GroundTruth``):
their tastes decide ``P(click | user, product, position)`` and the funnel after a click, and the
service never sees those tastes — only the events the shoppers produce. Nothing here does I/O; the
HTTP edge (``ab_service_client``) and the driver (``ab_runner``) use these functions.

The run starts where the event data ends (the ground truth's ``period_end``) and lasts ``days``:

* Users: ``users`` shoppers — warm ones drawn from the users the data knows, and
  ``new_user_share`` brand-new ones (the ground truth's *future* users, who have no events at all)
  arriving at a random time of the run. A user's segment is fixed by their history before the run:
  ``cold`` with at most ``cold_max_events`` events (the service's cold and light stages), else ``warm``.
* Sessions: every user has one session at arrival (new users) or at a random time (known users),
  plus Poisson(activity x active days) more (the ground truth's sessions per day); start times follow
  the generator's hourly profile. A session is ``1 + Poisson(pages_per_session_mean - 1)`` pages
  ``page_gap_s`` apart: the first is the home page (no context); after a click the next page is that
  product's page (session products = the session's clicks, newest first; category = the last click's).
* Clicks: each shown item is clicked independently with the ground truth's probability at its
  0-based position (position bias ``1 / log2(position + 2)``); a click becomes a cart with
  ``cart_probability``, a cart a purchase with ``purchase_probability / cart_probability``.
  Draws are seeded by (seed, user, session, page), so equal lists give equal clicks whatever the
  order the pages were served in.
* New products: the ground truth's *future* products released during the run; the shop announces
  each at its release time, and shoppers can only react to products already released.
* Arms: the service routes users with its sticky canary hash; :class:`ArmPlan` maps the service's
  variants to the experiment's arms (``fallback`` responses count for the user's routed arm:
  intention to treat).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from shared.data_generator import DAY_SECONDS, HOUR_SECONDS, HOURLY_PROFILE, SECOND, GroundTruth
from zadanie4.rollout.traffic_router import assign_variant

Arm = Literal["control", "treatment"]
ARMS: Final[tuple[Arm, Arm]] = ("control", "treatment")
Segment = Literal["cold", "warm"]
CONTROL_POLICIES: Final = ("popularity", "champion")
TREATMENT_POLICIES: Final = ("champion", "challenger")
CANARY_WEIGHT: Final = 0.5
FIRST_DAY_S: Final = float(DAY_SECONDS)

EVENT_COLUMNS: Final = ("user_id", "product_id", "event_type", "variant", "t_s")
"""Columns of an events table (the simulator's own, or the service's feedback log as read back):
``t_s`` is seconds since the start of the run (simulated time)."""


@dataclass(frozen=True)
class SimulationConfig:
    """Size and behaviour of one simulated run (see the module doc).

    days: length of the run (> 0); users: simulated shoppers (>= 2); seed: every random draw;
    k: items per recommendation list (1..100); new_user_share: share of users with no history
    (0..1, capped by the ground truth's future users); pages_per_session_mean: mean pages per
    session (>= 1); page_gap_s: seconds between two pages; cold_max_events: users with at most this
    many events before the run form the ``cold`` segment; page_context: send the product-page
    context (session products and category) after a click.
    """

    days: float = 7.0
    users: int = 1500
    seed: int = 42
    k: int = 10
    new_user_share: float = 0.15
    pages_per_session_mean: float = 3.0
    page_gap_s: float = 45.0
    cold_max_events: int = 5
    page_context: bool = True

    def __post_init__(self) -> None:
        checks = (
            (self.days > 0, f"days must be > 0, got {self.days}"),
            (self.users >= 2, f"users must be >= 2, got {self.users}"),
            (1 <= self.k <= 100, f"k must be within 1..100, got {self.k}"),
            (0.0 <= self.new_user_share <= 1.0, f"new_user_share must be within 0..1, got {self.new_user_share}"),
            (self.pages_per_session_mean >= 1.0, "pages_per_session_mean must be >= 1"),
            (self.page_gap_s > 0, "page_gap_s must be > 0"),
            (self.cold_max_events >= 0, "cold_max_events must be >= 0"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def duration_s(self) -> float:
        return self.days * DAY_SECONDS


# --- arms --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmPlan:
    """Which service variant serves which arm, and what fills the canary's challenger slot.

    * control ``popularity`` + treatment ``champion``: the challenger slot serves the popularity list
      (``POST /admin/canary {"challenger": "popularity"}``); control = ``challenger`` variant.
    * control ``champion`` + treatment ``challenger``: a plain canary between two registry models.
    * control ``popularity`` + treatment ``challenger``: only when the simulator starts the service,
      which then serves the registry's challenger alias as its champion.
    """

    control: str = "popularity"
    treatment: str = "champion"

    def __post_init__(self) -> None:
        if self.control not in CONTROL_POLICIES:
            raise ValueError(f"control must be one of {', '.join(CONTROL_POLICIES)}, got {self.control!r}")
        if self.treatment not in TREATMENT_POLICIES:
            raise ValueError(f"treatment must be one of {', '.join(TREATMENT_POLICIES)}, got {self.treatment!r}")
        if self.control == self.treatment:
            raise ValueError("control and treatment must differ")

    @property
    def challenger_source(self) -> str:
        """What the service's challenger slot holds: ``popularity`` or the ``registry`` alias."""
        return "popularity" if self.control == "popularity" else "registry"

    @property
    def control_variant(self) -> str:
        return "challenger" if self.control == "popularity" else "champion"

    @property
    def treatment_variant(self) -> str:
        return "champion" if self.control == "popularity" else "challenger"

    @property
    def champion_alias(self) -> str:
        """Registry alias the service's champion slot must serve for this plan."""
        return self.treatment if self.control == "popularity" else "champion"

    def arm_of_variant(self, variant: str) -> Arm | None:
        if variant == self.control_variant:
            return "control"
        if variant == self.treatment_variant:
            return "treatment"
        return None


def routed_arm(plan: ArmPlan, user_id: int, salt: str, weight: float = CANARY_WEIGHT) -> Arm:
    """The arm the service's canary routes ``user_id`` to (the same hash as ``traffic_router``)."""
    arm = plan.arm_of_variant(assign_variant(user_id, weight, salt))
    assert arm is not None
    return arm


def event_arms(plan: ArmPlan, user_ids: npt.ArrayLike, variants: Sequence[str | None], salt: str) -> np.ndarray:
    """Arm of each event: by the variant that served it, and by the user's routing for ``fallback``
    (degraded) responses or events without a variant (intention to treat)."""
    users = np.asarray(user_ids, dtype=np.int64)
    out = np.empty(len(users), dtype=object)
    routed: dict[int, Arm] = {}
    for i, (user, variant) in enumerate(zip(users.tolist(), variants, strict=True)):
        arm = plan.arm_of_variant(variant or "")
        if arm is None:
            arm = routed.get(user)
            if arm is None:
                arm = routed[user] = routed_arm(plan, user, salt)
        out[i] = arm
    return out


# --- users and their schedule --------------------------------------------------------------------------


@dataclass(frozen=True)
class SimUser:
    user_id: int
    segment: Segment
    prior_events: int  # events in the data before the run
    is_new: bool  # no history at all (arrives during the run)
    arrival_s: float  # seconds from the run start when the user can first visit


@dataclass(frozen=True)
class PlannedSession:
    user_id: int
    session_index: int  # 0, 1, ... per user
    start_s: float  # seconds from the run start
    n_pages: int


@dataclass(frozen=True)
class ProductRelease:
    product_id: int
    category_id: int
    price: float
    release_s: float  # seconds from the run start


def run_start(gt: GroundTruth) -> pd.Timestamp:
    """The run starts where the event data ends."""
    return pd.Timestamp(gt.period_end_ns, tz="UTC")


def choose_users(
    gt: GroundTruth, prior_events: Mapping[int, int], config: SimulationConfig, rng: np.random.Generator
) -> list[SimUser]:
    """``config.users`` shoppers: known users from the data plus brand-new (future) ones.

    New users are capped by the ground truth's future users; known users are drawn without
    replacement from the users with events (all of them when there are too few).
    """
    future = gt.future_user_ids()
    n_new = min(round(config.users * config.new_user_share), future.size)
    known_pool = np.asarray(sorted(u for u, n in prior_events.items() if n > 0), dtype=np.int64)
    known_pool = known_pool[np.isin(known_pool, gt.user_ids)]
    n_known = min(config.users - n_new, known_pool.size)
    known = rng.choice(known_pool, size=n_known, replace=False) if n_known else np.empty(0, np.int64)
    new = rng.choice(future, size=n_new, replace=False) if n_new else np.empty(0, np.int64)
    arrivals = sample_times(rng, new.size, 0.0, config.duration_s)
    users = [
        SimUser(int(u), _segment(prior_events.get(int(u), 0), config), int(prior_events.get(int(u), 0)), False, 0.0)
        for u in known.tolist()
    ]
    users += [SimUser(int(u), "cold", 0, True, float(t)) for u, t in zip(new.tolist(), arrivals.tolist(), strict=True)]
    return users


def _segment(n_events: int, config: SimulationConfig) -> Segment:
    return "cold" if n_events <= config.cold_max_events else "warm"


def sample_times(rng: np.random.Generator, n: int, lo_s: float, hi_s: float) -> np.ndarray:
    """``n`` times (seconds from the run start, UTC) in [lo, hi) following the shop's hourly profile.

    The run starts at midnight UTC and the profile is in local time (UTC + timezone offset is
    ignored here: the profile's shape, not its phase, matters for the experiment).
    """
    if n == 0 or hi_s <= lo_s:
        return np.full(n, lo_s, dtype=np.float64)
    hours = np.arange(int(np.floor(lo_s / HOUR_SECONDS)), int(np.ceil(hi_s / HOUR_SECONDS)))
    weights = np.asarray(HOURLY_PROFILE)[hours % 24].astype(np.float64)
    # Partial first/last hours get their share of the weight.
    weights[0] *= (min(hi_s, (hours[0] + 1) * HOUR_SECONDS) - lo_s) / HOUR_SECONDS
    if hours.size > 1:
        weights[-1] *= (hi_s - hours[-1] * HOUR_SECONDS) / HOUR_SECONDS
    hour = rng.choice(hours, size=n, p=weights / weights.sum())
    start = np.maximum(hour * HOUR_SECONDS, lo_s)
    end = np.minimum((hour + 1) * HOUR_SECONDS, hi_s)
    return np.asarray(start + rng.random(n) * (end - start), dtype=np.float64)


def plan_sessions(
    users: Sequence[SimUser], activity: Mapping[int, float], config: SimulationConfig, rng: np.random.Generator
) -> list[PlannedSession]:
    """Every user's sessions over the run, sorted by start time (ties by user id).

    One session at arrival (new users) or at a random time (known users), plus
    Poisson(activity x active days) more; pages per session ``1 + Poisson(mean - 1)``.
    """
    sessions: list[tuple[float, int, int]] = []
    for user in users:
        active_days = max(config.duration_s - user.arrival_s, 0.0) / DAY_SECONDS
        extra = int(rng.poisson(max(float(activity.get(user.user_id, 0.0)), 0.0) * active_days))
        first = user.arrival_s if user.is_new else float(sample_times(rng, 1, 0.0, config.duration_s)[0])
        starts = [first, *sample_times(rng, extra, user.arrival_s, config.duration_s).tolist()]
        sessions += [(t, user.user_id, 0) for t in starts]
    sessions.sort(key=lambda s: (s[0], s[1]))
    pages = 1 + rng.poisson(config.pages_per_session_mean - 1.0, len(sessions))
    counters: dict[int, int] = {}
    out = []
    for (start, user_id, _), n_pages in zip(sessions, pages.tolist(), strict=True):
        index = counters.get(user_id, 0)
        counters[user_id] = index + 1
        out.append(PlannedSession(user_id, index, float(start), int(n_pages)))
    return out


def product_releases(gt: GroundTruth, config: SimulationConfig) -> list[ProductRelease]:
    """Products released during the run (the ground truth's future products), by release time."""
    start_ns = gt.period_end_ns
    end_ns = start_ns + int(config.duration_s * SECOND)
    mask = (gt.product_release_ns >= start_ns) & (gt.product_release_ns < end_ns)
    idx = np.flatnonzero(mask)
    idx = idx[np.argsort(gt.product_release_ns[idx], kind="stable")]
    return [
        ProductRelease(
            int(gt.product_ids[i]),
            int(gt.category_ids[gt.product_category[i]]),
            float(gt.product_price[i]),
            (int(gt.product_release_ns[i]) - start_ns) / SECOND,
        )
        for i in idx.tolist()
    ]


# --- reactions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageReaction:
    """What the shopper did with one list: aligned boolean arrays over the shown items."""

    clicked: np.ndarray
    carted: np.ndarray
    purchased: np.ndarray


def page_rng(seed: int, user_id: int, session_index: int, page: int) -> np.random.Generator:
    """The random stream of one page: the same for the same page whatever the serving order."""
    return np.random.default_rng([seed, user_id % (2**32), user_id // (2**32), session_index, page])


def react_to_page(
    gt: GroundTruth, user_id: int, product_ids: Sequence[int], available_at_ns: int, rng: np.random.Generator
) -> PageReaction:
    """Clicks (ground-truth probability with position bias), carts and purchases for one shown list.

    Products the ground truth does not know, or not released at ``available_at_ns``, are never clicked.
    """
    n = len(product_ids)
    clicked = np.zeros(n, dtype=bool)
    carted = np.zeros(n, dtype=bool)
    purchased = np.zeros(n, dtype=bool)
    if n == 0:
        return PageReaction(clicked, carted, purchased)
    ids = np.asarray(product_ids, dtype=np.int64)
    known = np.isin(ids, gt.product_ids)
    if known.any():
        positions = np.flatnonzero(known)
        released = gt.product_release_ns[gt.product_index(ids[positions])] <= available_at_ns
        known[positions[~released]] = False
    u_click, u_cart, u_buy = rng.random(n), rng.random(n), rng.random(n)
    shown = np.flatnonzero(known)
    if shown.size:
        p_click = gt.click_probabilities(user_id, ids[shown], shown)
        p_cart = gt.cart_probability(user_id, ids[shown])
        p_buy = gt.purchase_probability(user_id, ids[shown]) / np.maximum(p_cart, 1e-12)
        clicked[shown] = u_click[shown] < p_click
        carted[shown] = clicked[shown] & (u_cart[shown] < p_cart)
        purchased[shown] = carted[shown] & (u_buy[shown] < p_buy)
    return PageReaction(clicked, carted, purchased)


FUNNEL_DELAYS_S: Final = {"impression": 0.0, "click": 2.0, "cart": 20.0, "purchase": 40.0}
"""Seconds after the page view at which each feedback event happens."""


def event_offset_ms(t_s: float, event_type: str) -> int:
    """Whole milliseconds from the run start of an event of a page viewed at ``t_s``."""
    return int((t_s + FUNNEL_DELAYS_S[event_type]) * 1000)


def iso_time(start: pd.Timestamp, offset_ms: int) -> str:
    """RFC 3339 UTC time ``offset_ms`` milliseconds after ``start`` (exact to the millisecond)."""
    moment = (start + pd.Timedelta(milliseconds=offset_ms)).to_pydatetime()
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def feedback_events(
    run_id: str,
    user_id: int,
    session_index: int,
    page: int,
    recommendation_id: str | None,
    product_ids: Sequence[int],
    reaction: PageReaction,
    start: pd.Timestamp,
    t_s: float,
) -> list[dict[str, object]]:
    """The ``/feedback`` events of one page: an impression per shown item, then clicks, carts, purchases.

    Event ids are deterministic (``<run>:<user>:<session>:<page>:<position>:<type>``), so a retried
    request is recognised as a duplicate by the service.
    """
    out: list[dict[str, object]] = []
    for event_type, mask in (
        ("impression", np.ones(len(product_ids), dtype=bool)),
        ("click", reaction.clicked),
        ("cart", reaction.carted),
        ("purchase", reaction.purchased),
    ):
        for position in np.flatnonzero(mask).tolist():
            event: dict[str, object] = {
                "event_id": f"{run_id}:{user_id}:{session_index}:{page}:{position}:{event_type}",
                "user_id": int(user_id),
                "product_id": int(product_ids[position]),
                "event_type": event_type,
                "timestamp": iso_time(start, event_offset_ms(t_s, event_type)),
            }
            if recommendation_id:
                event["recommendation_id"] = recommendation_id
            out.append(event)
    return out


# --- summaries -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmCounts:
    users: int
    impressions: int
    clicks: int
    carts: int
    purchases: int

    @property
    def ctr(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0


@dataclass(frozen=True)
class NewProductStats:
    first_day_impressions: int
    first_day_clicks: int
    impressions_while_fresh: int  # every impression shown while some new product was in its first day
    products_released: int
    products_shown_first_day: int
    by_arm: Mapping[str, tuple[int, int]]  # arm -> (first-day impressions, impressions while fresh)

    @property
    def impression_share_first_day(self) -> float:
        return self.first_day_impressions / self.impressions_while_fresh if self.impressions_while_fresh else 0.0

    @property
    def ctr(self) -> float:
        return self.first_day_clicks / self.first_day_impressions if self.first_day_impressions else 0.0


@dataclass(frozen=True)
class ExperimentSummary:
    """Per-arm counts (overall and by segment), the CTR time series, new products, per-user counts."""

    arms: Mapping[str, ArmCounts]
    segments: Mapping[str, Mapping[str, ArmCounts]]  # segment -> arm -> counts
    series: pd.DataFrame  # bucket_start_s, arm, impressions, clicks
    new_products: NewProductStats
    per_variant: dict[str, dict[str, int]]  # variant -> event type -> count
    per_user: pd.DataFrame  # user_id, arm, impressions, clicks


def events_frame(rows: Iterable[Mapping[str, object]]) -> pd.DataFrame:
    """A typed events table (:data:`EVENT_COLUMNS`) from dict rows."""
    frame = pd.DataFrame(list(rows), columns=list(EVENT_COLUMNS))
    return frame.astype(
        {"user_id": "int64", "product_id": "int64", "event_type": "object", "variant": "object", "t_s": "float64"}
    )


def summarize(
    events: pd.DataFrame,
    plan: ArmPlan,
    salt: str,
    users: Sequence[SimUser],
    releases: Sequence[ProductRelease],
    *,
    bucket_s: float = 6 * HOUR_SECONDS,
) -> ExperimentSummary:
    """Aggregate an events table (simulator's or the service's log) into the experiment's numbers.

    Only events of the simulated ``users`` count. Arms come from :func:`event_arms`.
    """
    segment_of = {u.user_id: u.segment for u in users}
    frame = events[events["user_id"].isin(segment_of.keys())].copy()
    frame["arm"] = event_arms(plan, frame["user_id"].to_numpy(), frame["variant"].tolist(), salt)
    frame["segment"] = frame["user_id"].map(segment_of)
    frame["variant"] = frame["variant"].fillna("none")

    def counts(part: pd.DataFrame) -> ArmCounts:
        by_type = part["event_type"].value_counts()
        shown = part[part["event_type"] == "impression"]
        return ArmCounts(
            users=int(shown["user_id"].nunique()),
            impressions=int(by_type.get("impression", 0)),
            clicks=int(by_type.get("click", 0)),
            carts=int(by_type.get("cart", 0)),
            purchases=int(by_type.get("purchase", 0)),
        )

    arms: dict[str, ArmCounts] = {arm: counts(frame[frame["arm"] == arm]) for arm in ARMS}
    segments: dict[str, dict[str, ArmCounts]] = {
        segment: {arm: counts(frame[(frame["arm"] == arm) & (frame["segment"] == segment)]) for arm in ARMS}
        for segment in ("cold", "warm")
    }
    frame["bucket_start_s"] = np.floor(frame["t_s"] / bucket_s) * bucket_s
    ic = frame[frame["event_type"].isin(["impression", "click"])]
    series = (
        ic.pivot_table(index=["bucket_start_s", "arm"], columns="event_type", values="user_id", aggfunc="size")
        .reindex(columns=["impression", "click"])
        .fillna(0)
        .astype("int64")
        .rename(columns={"impression": "impressions", "click": "clicks"})
        .reset_index()
    )
    series.columns.name = None
    per_user = (
        ic.pivot_table(index=["user_id", "arm"], columns="event_type", values="t_s", aggfunc="size")
        .reindex(columns=["impression", "click"])
        .fillna(0)
        .astype("int64")
        .rename(columns={"impression": "impressions", "click": "clicks"})
        .reset_index()
    )
    per_user.columns.name = None
    per_variant = {
        str(variant): {str(t): int(n) for t, n in part["event_type"].value_counts().items()}
        for variant, part in frame.groupby("variant")
    }
    return ExperimentSummary(
        arms, segments, series, new_product_stats(frame, releases), per_variant, per_user[per_user["impressions"] > 0]
    )


def new_product_stats(frame: pd.DataFrame, releases: Sequence[ProductRelease]) -> NewProductStats:
    """Impressions and clicks of products in their first day after release, and the share they had
    of all impressions shown while at least one new product was in its first day."""
    impressions = frame[frame["event_type"] == "impression"]
    release_of = {r.product_id: r.release_s for r in releases}
    if not release_of:
        return NewProductStats(0, 0, 0, 0, 0, {arm: (0, 0) for arm in ARMS})
    release = frame["product_id"].map(release_of)
    fresh_item = (release.notna()) & (frame["t_s"] >= release) & (frame["t_s"] < release + FIRST_DAY_S)
    times = np.sort(np.asarray(list(release_of.values()), dtype=np.float64))
    # An impression at time t is "while fresh" when some product was released in (t - 1 day, t].
    newest_before = np.searchsorted(times, impressions["t_s"].to_numpy(), side="right")
    latest = np.where(newest_before > 0, times[np.maximum(newest_before - 1, 0)], -np.inf)
    while_fresh = pd.Series(impressions["t_s"].to_numpy() - latest < FIRST_DAY_S, index=impressions.index)
    first_day_impressions = fresh_item & (frame["event_type"] == "impression")
    first_day_clicks = fresh_item & (frame["event_type"] == "click")
    by_arm: dict[str, tuple[int, int]] = {
        arm: (
            int((first_day_impressions & (frame["arm"] == arm)).sum()),
            int((while_fresh & (impressions["arm"] == arm)).sum()),
        )
        for arm in ARMS
    }
    return NewProductStats(
        first_day_impressions=int(first_day_impressions.sum()),
        first_day_clicks=int(first_day_clicks.sum()),
        impressions_while_fresh=int(while_fresh.sum()),
        products_released=len(release_of),
        products_shown_first_day=int(frame.loc[first_day_impressions, "product_id"].nunique()),
        by_arm=by_arm,
    )


def parse_event_time(stamps: pd.Series, start: pd.Timestamp) -> np.ndarray:
    """ISO timestamps (as the service stores them) -> seconds since ``start``."""
    times = pd.to_datetime(stamps, utc=True, format="ISO8601")
    return np.asarray((times - start).dt.total_seconds(), dtype=np.float64)
