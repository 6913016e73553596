"""What the service serves right now: models per variant, canary weight, shadow flag — swapped atomically.

Requests read one immutable :class:`ServingSnapshot` (a single attribute read) at their start and use
it to the end, so ``/admin/reload`` or ``/admin/canary`` never leave a request half on the old and
half on the new state, and no request is dropped or blocked while models load: the new models are
loaded first (off the event loop) and only then swapped in.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from zadanie4.dependencies import LoadedModel


@dataclass(frozen=True)
class ServingSnapshot:
    champion: LoadedModel | None = None
    challenger: LoadedModel | None = None
    canary_weight: float = 0.0
    shadow_enabled: bool = False
    champion_loaded_at: datetime | None = None
    challenger_loaded_at: datetime | None = None

    @property
    def effective_canary_weight(self) -> float:
        """The weight actually applied: 0 while no challenger is loaded."""
        return self.canary_weight if self.challenger is not None else 0.0


class ServiceState:
    """Holder of the current snapshot; writers serialise on a lock, readers just read ``snapshot``."""

    def __init__(self, canary_weight: float = 0.0, shadow_enabled: bool = False) -> None:
        self._lock = threading.Lock()
        self.snapshot = ServingSnapshot(canary_weight=canary_weight, shadow_enabled=shadow_enabled)

    def set_canary_weight(self, weight: float) -> ServingSnapshot:
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"canary weight must be within 0..1, got {weight}")
        with self._lock:
            self.snapshot = replace(self.snapshot, canary_weight=float(weight))
            return self.snapshot

    def set_shadow_enabled(self, enabled: bool) -> ServingSnapshot:
        with self._lock:
            self.snapshot = replace(self.snapshot, shadow_enabled=bool(enabled))
            return self.snapshot

    def swap_models(
        self,
        champion: LoadedModel | None,
        challenger: LoadedModel | None,
        *,
        keep_champion: bool = False,
        keep_challenger: bool = False,
    ) -> ServingSnapshot:
        """Install new models in one step; ``keep_*`` leaves that variant as it is (its load failed)."""
        now = datetime.now(UTC)
        with self._lock:
            current = self.snapshot
            new_champion = current.champion if keep_champion else champion
            new_challenger = current.challenger if keep_challenger else challenger
            self.snapshot = replace(
                current,
                champion=new_champion,
                challenger=new_challenger,
                champion_loaded_at=current.champion_loaded_at if _same(current.champion, new_champion) else now,
                challenger_loaded_at=(
                    current.challenger_loaded_at if _same(current.challenger, new_challenger) else now
                ),
            )
            return self.snapshot


def _same(old: LoadedModel | None, new: LoadedModel | None) -> bool:
    return (old is None and new is None) or (old is not None and new is not None and old.version == new.version)
