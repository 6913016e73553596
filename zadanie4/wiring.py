"""The real dependencies of the service, built at startup (in a background thread, never at import).

* candidates + popularity: ``zadanie1.candidate_generation.CandidateIndex`` from ``artifacts/train/candidates``;
* features: ``zadanie2.online_feature_reader.create_feature_reader`` (direct Redis when the online store
  is Redis, the Feast SDK over SQLite otherwise) — the read path ``recsys features check`` verifies;
* models: ``zadanie3.registry_client.load_ranker_by_alias`` (with its local last-good cache); when the
  registry has no champion, or cannot be reached and has nothing cached, the champion comes from the
  local ranker folder ``artifacts/train/ranker`` written by ``recsys train``;
* real-time feature updates: zadanie2's ``RealtimeFeatureUpdater`` fed with stored feedback events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from shared.errors import UserInputError
from zadanie4.dependencies import LoadedModel, ServiceDependencies
from zadanie4.settings import ServeSettings

log = logging.getLogger(__name__)

# Feedback event -> REES46 event type for the real-time feature update (impressions change no feature).
FEEDBACK_TO_EVENT_TYPE = {"click": "view", "cart": "cart", "purchase": "purchase"}


class RegistryModelProvider:
    """Loads aliases from the MLflow registry (zadanie3), falling back to the local ranker for the champion.

    The registry is asked by a helper process (:mod:`zadanie4.registry_helper`), so the MLflow calls
    never hold this process's GIL; here only the model files are parsed. The model last loaded per
    alias is kept: when a reload finds the alias on the same version, that model is returned as is.
    """

    def __init__(self, settings: ServeSettings, helper: Any | None = None) -> None:
        from zadanie4.registry_helper import RegistryHelper

        self.settings = settings
        self.helper = helper or RegistryHelper(settings.registry_cache_dir)
        self._last: dict[str, tuple[tuple[int, str | None, str], LoadedModel]] = {}

    def load(self, alias: str) -> LoadedModel | None:
        from zadanie3 import registry_client
        from zadanie3.settings import load_settings as load_registry_settings

        try:
            fetched = self.helper.fetch(alias)
        except registry_client.ModelNotFound:
            log.info("registry has no alias %r", alias)
            return self._local_champion(alias, reason="alias not set in the registry")
        except registry_client.RegistryUnavailable as exc:
            local = self._local_champion(alias, reason=f"registry unavailable ({exc})")
            if local is None:
                raise
            return local
        key = (fetched.version, fetched.run_id, fetched.loaded_from)
        last = self._last.get(alias)
        if last is not None and last[0] == key and fetched.loaded_from == "registry":
            return last[1]
        artifact = registry_client.load_fetched_ranker(fetched, load_registry_settings())
        model = LoadedModel(
            version=str(fetched.version), ranker=artifact, source=f"registry:{alias} ({fetched.loaded_from})"
        )
        self._last[alias] = (key, model)
        return model

    def close(self) -> None:
        self.helper.close()

    def _local_champion(self, alias: str, *, reason: str) -> LoadedModel | None:
        if alias != self.settings.champion_alias:
            return None
        return load_local_ranker(self.settings.resolved_local_ranker_dir, reason=reason)


def load_local_ranker(folder: Path, *, reason: str = "") -> LoadedModel | None:
    """The ranker folder written by training, or None when there is none."""
    from shared.feature_definitions import RANKER_FEATURES
    from zadanie1.ranker_artifact import load_ranker

    if not folder.is_dir():
        return None
    artifact = load_ranker(folder, expected_features=RANKER_FEATURES)
    log.warning("serving the local ranker %s as champion: %s", folder, reason)
    return LoadedModel(version=f"local:{folder.name}", ranker=artifact, source=f"local folder {folder}")


def feedback_as_events(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Stored feedback records -> REES46-shaped events (view/cart/purchase) for the real-time update.

    A click is the view of the product page it leads to; impressions change no feature and are
    dropped. Category and price come from the service's product cache when it knows the product.
    """
    out = []
    for r in records:
        event_type = FEEDBACK_TO_EVENT_TYPE.get(str(r["event_type"]))
        if event_type is None:
            continue
        event = {
            "event_time": r["timestamp"],
            "event_type": event_type,
            "product_id": int(r["product_id"]),
            "user_id": int(r["user_id"]),
            "user_session": r.get("recommendation_id"),
        }
        if r.get("category_id") is not None:
            event["category_id"] = int(r["category_id"])
        if r.get("price") is not None:
            event["price"] = float(r["price"])
        out.append(event)
    return out


def realtime_hook(feature_settings: Any) -> Callable[[Sequence[Mapping[str, Any]]], None]:
    """zadanie2's :class:`RealtimeFeatureUpdater` taking the service's stored feedback records."""
    from zadanie2.realtime_updates import RealtimeFeatureUpdater

    updater = RealtimeFeatureUpdater(feature_settings)

    def update(records: Sequence[Mapping[str, Any]]) -> None:
        events = feedback_as_events(records)
        if events:
            updater.apply_records(events)

    return update


class CandidateIndexLoader:
    """Builds the core from the candidate folder; ``load_if_changed`` only when its files changed."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.folder = settings.resolved_candidates_dir
        self._stamp: tuple[tuple[int, int], ...] | None = None

    def _file_stamp(self) -> tuple[tuple[int, int], ...]:
        from zadanie1.candidate_generation import ARRAYS_FILE, META_FILE

        stamps = []
        for name in (ARRAYS_FILE, META_FILE):
            stat = (self.folder / name).stat()
            stamps.append((stat.st_mtime_ns, stat.st_size))
        return tuple(stamps)

    def load(self) -> Any:
        from zadanie1.candidate_generation import CandidateIndex
        from zadanie4.recommender_adapter import CandidateIndexCore

        if not self.folder.is_dir():
            raise UserInputError(f"{self.folder}: no candidate index (run `recsys train` first)")
        stamp = self._file_stamp()
        index = CandidateIndex.load(self.folder)
        self._stamp = stamp
        return CandidateIndexCore(
            index,
            n_candidates=self.settings.n_candidates,
            max_per_category=self.settings.max_per_category,
            warm_threshold_events=self.settings.warm_threshold_events,
        )

    def load_if_changed(self) -> Any | None:
        """A new core when the files differ from the last load (and are complete), else None."""
        try:
            stamp = self._file_stamp()
        except OSError:  # being rewritten right now: try again next time
            return None
        if stamp == self._stamp:
            return None
        return self.load()


def build_dependencies(settings: ServeSettings) -> ServiceDependencies:
    """Load the candidate index, open the feature reader and prepare the registry client (seconds)."""
    from zadanie2.online_feature_reader import create_feature_reader
    from zadanie2.settings import load_settings as load_feature_settings
    from zadanie4.recommender_adapter import product_block_from_frames

    candidates = CandidateIndexLoader(settings)
    core = candidates.load()
    feature_settings = load_feature_settings()
    reader = create_feature_reader(feature_settings)
    hook = None
    try:
        if settings.realtime_updates:
            hook = realtime_hook(feature_settings)
    except Exception as exc:  # the hook is best effort; serving must start without it
        log.warning("real-time feature updates disabled: %s", exc)
        hook = None
    return ServiceDependencies(
        core=core,
        reader=reader,
        models=RegistryModelProvider(settings),
        product_block_factory=product_block_from_frames,
        realtime_update=hook,
        core_loader=candidates.load_if_changed,
    )
