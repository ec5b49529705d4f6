#!/usr/bin/env bash
# One command to run the whole test suite: install into .venv (with the test and spark extras; a Java runtime for
# Spark's local mode when none is there), check style with ruff (lint and
# format; any finding fails the run), then pytest against a real Redis (an embedded redis-server, or the server at
# REDIS_URL). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/pytest ] || [ pyproject.toml -nt .venv/.installed-test ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test,spark]'
  touch .venv/.installed-test
fi
# The dashboard's browser tests drive Debian's Chromium; install it when missing and allowed (CI runs as root).
# Without it they skip and say why (tests/api/test_dashboard_browser.py).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium (Debian package) for the browser tests" >&2
  (export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq chromium >/dev/null) ||
    echo "could not install chromium: the browser tests will skip" >&2
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# The Spark engine's tests (tests/test_spark_engine.py, local mode) need a Java runtime.
if ! command -v java >/dev/null; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi
# The container check (tests/deploy, marker "container") installs podman itself when missing and it runs as root;
# without root it skips and says why. -m "not container" leaves it out.
exec .venv/bin/python -m pytest "$@"
