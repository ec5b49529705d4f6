#!/usr/bin/env bash
# One command to run the whole test suite: install into .venv (with test extras), then pytest against a real Redis
# (an embedded redis-server, or the server at REDIS_URL). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/pytest ] || [ pyproject.toml -nt .venv/.installed-test ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]'
  touch .venv/.installed-test
fi
exec .venv/bin/python -m pytest "$@"
