#!/usr/bin/env bash
# Every performance figure of docs/PERFORMANCE.md with one command, then the doc's tables rewritten from the results.
#   bench/run.sh              serving + job benchmarks (the job part takes about half an hour on 2 cores)
#   bench/run.sh serving      only the serving benchmark      bench/run.sh job   only the job benchmark
#   bench/run.sh ingest       only the live-event ingestion rate (POST /events, batches of 100)
# Raw results: bench/results/serving.json, bench/results/job.json. Installs what it needs: the project into .venv
# (like ./run.sh; PYTHON picks the interpreter, RECO_BENCH_VENV another environment), psutil, and wrk + redis-tools
# (redis-benchmark) from Debian's packages when they are missing. Loads only 127.0.0.1; every load is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${RECO_BENCH_VENV:-.venv}
WHAT=${1:-all}

if [ ! -x "$VENV/bin/reco" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e .
fi
"$VENV/bin/python" -c "import psutil" 2>/dev/null || "$VENV/bin/python" -m pip install --quiet psutil

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

mkdir -p bench/results
if [ "$WHAT" = all ] || [ "$WHAT" = serving ]; then
  "$VENV/bin/python" bench/serving.py --out bench/results/serving.json
fi
if [ "$WHAT" = all ] || [ "$WHAT" = ingest ]; then
  "$VENV/bin/python" bench/ingest.py --out bench/results/ingest.json
fi
if [ "$WHAT" = all ] || [ "$WHAT" = job ]; then
  "$VENV/bin/python" bench/job.py --out bench/results/job.json
fi
"$VENV/bin/python" bench/report.py
