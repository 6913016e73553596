"""Fixtures of the service tests: a generated shop, settings in a temp dir, and a running app + client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from zadanie4.app import create_app
from zadanie4.dependencies import ServiceDependencies
from zadanie4.service import ServiceRuntime
from zadanie4.settings import ServeSettings, load_settings
from zadanie4.tests.service_fakes import Shop, make_shop

ADMIN_TOKEN = "test-admin-token"


@pytest.fixture(scope="session")
def shop() -> Shop:
    return make_shop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path) -> ServeSettings:
    return make_settings(tmp_path)


def make_settings(tmp_path: Path, **overrides: Any) -> ServeSettings:
    values: dict[str, Any] = {
        "artifacts_dir": tmp_path,
        "admin_token": ADMIN_TOKEN,
        "redis_url": None,
        "feedback_sqlite_path": tmp_path / "feedback.db",
        "exploration_share": 0.0,
        "exploration_seed": 1,
        "load_challenger": True,
        "feature_budget_ms": 2000.0,  # generous: degradation tests set their own budget
        "realtime_update_interval_s": 0.0,
        "shadow_sample_rate": 1.0,  # every champion request, so tests see each job
    }
    values.update(overrides)
    return load_settings(**values)


@dataclass
class Running:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def runtime(self) -> ServiceRuntime:
        return self.app.state.runtime


@asynccontextmanager
async def running_service(
    settings: ServeSettings, dependencies: ServiceDependencies, *, wait_ready: bool = True, **kwargs: Any
) -> AsyncIterator[Running]:
    """The app with its lifespan entered, an httpx client on it, and (by default) ready."""
    app = create_app(settings, dependencies=dependencies, **kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            running = Running(app, client)
            if wait_ready:
                assert await running.runtime.wait_ready(10.0), running.runtime.startup_error
            yield running


def admin_headers(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
