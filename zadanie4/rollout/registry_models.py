"""The champion and challenger from the MLflow registry (zadanie3), with the local ranker as last resort.

:class:`RegistryModelProvider` is the service's real ``ModelProvider``: it resolves an alias in a helper
process (:mod:`zadanie4.rollout.registry_lookup_process`), parses the model files here, and keeps the model
last loaded per alias so a reload that finds the same version costs nothing. When the registry has no
champion, or cannot be reached and has nothing cached, the champion is the ranker folder written by
``recsys train`` (``artifacts/train/ranker``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from zadanie4.dependencies import LoadedModel
from zadanie4.settings import ServeSettings

log = logging.getLogger(__name__)


class RegistryModelProvider:
    """Loads aliases from the MLflow registry (zadanie3), falling back to the local ranker for the champion.

    The registry is asked by a helper process (:mod:`zadanie4.rollout.registry_lookup_process`), so the MLflow calls
    never hold this process's GIL; here only the model files are parsed. The model last loaded per
    alias is kept: when a reload finds the alias on the same version, that model is returned as is.
    """

    def __init__(self, settings: ServeSettings, helper: Any | None = None) -> None:
        from zadanie4.rollout.registry_lookup_process import RegistryHelper

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
