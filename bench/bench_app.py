"""The command line of a benchmark's own app (bench/bare_app.py, bench/app_without_experiment.py): served by the
same function as ``reco serve``, so the comparison with the API is like for like."""

from __future__ import annotations

import argparse
import os
import sys


def main(app: str, default_port: int) -> None:
    """Serve ``app`` ("module:factory" of a module in bench/) with ``--host``, ``--port`` and ``--workers``."""
    from api.server import serve

    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=default_port)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    os.environ["PYTHONPATH"] = here + os.pathsep + os.environ.get("PYTHONPATH", "")  # the workers import it too
    serve(a.host, a.port, a.workers, app=app)
