"""Integration: production setup — `recsys registry server` (mlflow server on the real PostgreSQL at
127.0.0.1:5432, its own database, created and dropped here) and the client talking to it over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from zadanie1.ranker_artifact import load_ranker
from zadanie3 import registry_client as rc
from zadanie3.evaluation_set import load_evaluation_set
from zadanie3.gate_runner import run_validation
from zadanie3.mlflow_server import ensure_postgres_database
from zadanie3.settings import load_settings

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PG = "postgresql://postgres@127.0.0.1:5432"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_uri() -> Iterator[str]:
    """A uniquely named database, dropped (with its connections) afterwards."""
    import psycopg2

    name = f"recsys_z3_test_{uuid.uuid4().hex[:10]}"
    assert ensure_postgres_database(f"{PG}/{name}") is True
    try:
        yield f"{PG}/{name}"
    finally:
        conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=3)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@pytest.fixture
def mlflow_server(postgres_uri: str, tmp_path: Path) -> Iterator[str]:
    """`recsys registry server` on that database at an ephemeral port; its process group is stopped after."""
    port = _free_port()
    command = [sys.executable, "-m", "shared.cli", "registry", "server", "--port", str(port)]
    command += ["--backend-store-uri", postgres_uri, "--artifacts-destination", str(tmp_path / "server-artifacts")]
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, server, log_path)
            yield url
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def _wait_healthy(url: str, server: subprocess.Popen, log_path: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"mlflow server did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.3)


def test_workflow_on_the_postgres_backed_server(
    mlflow_server: str,
    tmp_path: Path,
    good_ranker_dir: Path,
    bad_ranker_dir: Path,
    eval_set_path: Path,
) -> None:
    import mlflow

    settings = load_settings(
        artifacts_dir=tmp_path / "client-artifacts", tracking_uri=mlflow_server, eval_set_path=eval_set_path
    )
    matrix = load_evaluation_set(eval_set_path).features[:200]
    expected = load_ranker(good_ranker_dir).score(matrix)

    # register -> validate -> promote -> load models:/<name>@champion
    good = rc.register_ranker(good_ranker_dir, settings).version
    assert run_validation(good, settings)[0].passed
    rc.promote(good, settings)
    version, artifact = rc.load_ranker_by_alias("champion", settings)
    native = mlflow.lightgbm.load_model(f"models:/{settings.model_name}@champion")
    assert version == good
    np.testing.assert_array_equal(artifact.score(matrix), expected)
    np.testing.assert_array_equal(native.predict(matrix), expected)
    # artifacts went through the server's proxy into its folder, not into a client-side ./mlruns
    assert list((tmp_path / "server-artifacts").glob("*/models/*/artifacts/extra_files/model.txt"))

    # a shuffled-label challenger is rejected; the champion does not move
    bad = rc.register_ranker(bad_ranker_dir, settings).version
    assert not run_validation(bad, settings)[0].passed
    with pytest.raises(rc.PromotionRefused):
        rc.promote(bad, settings)
    assert rc.resolve_alias("champion", settings) == good

    # forced promotion, then rollback restores the previous champion
    rc.promote(bad, settings, force=True, reason="integration test of rollback")
    move = rc.rollback(settings, reason="bad model")
    assert (move.previous, move.current) == (bad, good)
    assert rc.resolve_alias("champion", settings) == good

    # registry down: the service still starts with the last good champion from its cache
    rc.load_ranker_by_alias("champion", settings)
    down = settings.model_copy(update={"tracking_uri": f"http://127.0.0.1:{_free_port()}", "connect_timeout_s": 0.5})
    cached, cached_artifact = rc.load_ranker_by_alias("champion", down)
    assert cached == good and cached_artifact.meta["loaded_from"] == "cache"
    np.testing.assert_array_equal(cached_artifact.score(matrix), expected)


def test_server_creates_its_database_only_once(postgres_uri: str) -> None:
    assert ensure_postgres_database(postgres_uri) is False
