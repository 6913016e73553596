#!/bin/sh
# Start the MLflow server of docker-compose.yml.
# The backend store URI is built here from the POSTGRES_* variables (password URL-encoded) and passed
# through MLFLOW_BACKEND_STORE_URI rather than the command line, so it does not show in `ps`.
# One worker and MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false keep the server at ~0.6 GB (4 workers + job
# runners take ~3.7 GB). It listens on 0.0.0.0 inside the container; compose publishes it on 127.0.0.1.
set -eu

: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
POSTGRES_USER="${POSTGRES_USER:-mlflow}"
POSTGRES_DB="${POSTGRES_DB:-mlflow}"
POSTGRES_HOST="${POSTGRES_HOST:-postgres}"
POSTGRES_PORT="${POSTGRES_PORT:-5432}"

encoded_password="$(python -c 'import os, urllib.parse; print(urllib.parse.quote(os.environ["POSTGRES_PASSWORD"], safe=""))')"
MLFLOW_BACKEND_STORE_URI="postgresql://${POSTGRES_USER}:${encoded_password}@${POSTGRES_HOST}:${POSTGRES_PORT}/${POSTGRES_DB}"
export MLFLOW_BACKEND_STORE_URI
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

exec mlflow server \
    --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-/mlartifacts}" \
    --serve-artifacts \
    --workers 1 \
    --host 0.0.0.0 \
    --port 5000 \
    --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-mlflow:5000,localhost:*,127.0.0.1:*}"
