"""The production tracking/registry server: ``mlflow server`` on PostgreSQL, used by ``make mlflow-server``.

Measured (CONVENTIONS.md): the default 4 workers + job runners take ~3.7 GB; one worker with job
execution off takes ~0.6 GB and is ready in ~6 s. The server binds 127.0.0.1 and accepts only
local Host headers unless configured otherwise; artifacts are proxied (``mlflow-artifacts:/``) from
a local folder, so clients need no direct access to the artifact store.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from urllib.parse import urlparse

from shared.errors import UserInputError
from zadanie3.settings import RegistrySettings


def mlflow_server_command(settings: RegistrySettings, *, python: str = sys.executable) -> list[str]:
    """The argv that starts the server (pure; ``--dry-run`` prints it).

    The backend store URI is not on the command line (it may hold a password, and argv shows in
    ``ps``); :func:`mlflow_server_env` passes it as ``MLFLOW_BACKEND_STORE_URI``.
    """
    return [
        python,
        "-m",
        "mlflow",
        "server",
        "--serve-artifacts",
        "--artifacts-destination",
        str(settings.effective_server_artifacts_destination),
        "--host",
        settings.server_host,
        "--port",
        str(settings.server_port),
        "--workers",
        str(settings.server_workers),
        "--allowed-hosts",
        settings.server_allowed_hosts,
    ]


def mlflow_server_env(settings: RegistrySettings, base: Mapping[str, str]) -> dict[str, str]:
    """Environment of the server: the backend store, no telemetry, no background job runners."""
    return {
        **base,
        "MLFLOW_BACKEND_STORE_URI": settings.server_backend_store_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }


def ensure_postgres_database(uri: str) -> bool:
    """Create the database named in a ``postgresql://`` URI if missing; True when it was created.

    Other schemes are left alone (SQLite files are created by MLflow itself).
    """
    parsed = urlparse(uri)
    if not parsed.scheme.startswith("postgresql"):
        return False
    import psycopg2
    from psycopg2 import sql

    name = parsed.path.lstrip("/")
    if not name:
        raise UserInputError(f"{uri}: no database name in the backend store URI")
    try:
        conn = psycopg2.connect(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 5432,
            user=parsed.username or "postgres",
            password=parsed.password,
            dbname="postgres",
            connect_timeout=5,
        )
    except psycopg2.OperationalError as exc:
        raise UserInputError(
            f"PostgreSQL at {parsed.hostname}:{parsed.port or 5432} unreachable: {str(exc).strip()}"
        ) from exc
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone():
                return False
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    finally:
        conn.close()
