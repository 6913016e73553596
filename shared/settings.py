"""Settings shared by every part: where data and artifacts live."""

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class SharedSettings(BaseSettings):
    """Locations of the data and artifacts folders (env prefix ``RECSYS_``)."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_", extra="ignore")

    data_dir: Path = Path("data")
    artifacts_dir: Path = Path("artifacts")

    @property
    def default_events_path(self) -> Path:
        return self.data_dir / "events.parquet"

    @property
    def ground_truth_dir(self) -> Path:
        return self.data_dir / "ground_truth"


def load_shared_settings() -> SharedSettings:
    return SharedSettings()
