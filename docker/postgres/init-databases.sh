#!/bin/bash
# Runs once, when the postgres container starts on an empty data volume (the image runs
# /docker-entrypoint-initdb.d/*.sh then; later starts skip it). MLflow and Prefect get a
# database and a login role each, so neither service holds the superuser's password and a
# leaked service password exposes one database only.
#
# The passwords go in as psql variables and are quoted by psql (:'name'), so a quote in a
# password cannot break or inject SQL.
set -euo pipefail

: "${MLFLOW_DB_PASSWORD:?must be set (docker/.env)}"
: "${PREFECT_DB_PASSWORD:?must be set (docker/.env)}"

psql --set=ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set=mlflow_password="$MLFLOW_DB_PASSWORD" \
    --set=prefect_password="$PREFECT_DB_PASSWORD" <<'SQL'
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow OWNER mlflow;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
CREATE ROLE prefect LOGIN PASSWORD :'prefect_password';
CREATE DATABASE prefect OWNER prefect;
REVOKE ALL ON DATABASE prefect FROM PUBLIC;
SQL
