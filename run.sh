#!/usr/bin/env bash
# One command to see the service work: install into .venv, train on the demo shop (or your data), serve on :8000.
#   ./run.sh                          a generated demo shop
#   ./run.sh EVENTS [ITEMS] [FORMAT]  your data, e.g. ./run.sh ../shared/data/online-retail/online_retail.parquet "" online-retail
# Environment: REDIS_URL (default: an embedded Redis), RECO_HOST / RECO_PORT (default 127.0.0.1:8000), any RECO_* setting.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/reco ] || [ pyproject.toml -nt .venv/.installed ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e .
  touch .venv/.installed
fi
EVENTS=${1:-}
ITEMS=${2:-}
FORMAT=${3:-generic}
if [ -z "$EVENTS" ]; then
  [ -f var/demo-shop/events.csv ] || .venv/bin/reco demo-data --out var/demo-shop
  EVENTS=var/demo-shop/events.csv
  ITEMS=var/demo-shop/items.csv
fi
.venv/bin/reco train --events "$EVENTS" ${ITEMS:+--items "$ITEMS"} --format "$FORMAT"
HOST=${RECO_HOST:-127.0.0.1}
PORT=${RECO_PORT:-8000}
.venv/bin/reco examples --base-url "http://$HOST:$PORT"
echo "Stop with Ctrl-C."
exec .venv/bin/reco serve --host "$HOST" --port "$PORT"
