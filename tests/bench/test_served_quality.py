"""bench/served_quality.py, the out-of-the-box goal's protocol, runs end to end on a small generated shop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from recommender.data.demo import generate_shop

ROOT = Path(__file__).resolve().parents[2]


def test_served_quality_trains_serves_and_scores_every_warm_buyer(tmp_path) -> None:
    events, items = generate_shop(n_users=300, n_items=100, days=120, seed=7, kind="grocery").write(tmp_path / "shop")
    out = tmp_path / "report.json"
    args = ["--events", str(events), "--items", str(items), "--test-days", "14", "--workdir", str(tmp_path / "night")]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "served_quality.py"), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["customers"] > 50 and sum(report["sources"].values()) == report["customers"]
    assert report["sources"].get("personal", 0) >= report["customers"] - 2
    assert report["night"]["settings"].startswith("tuned ")  # a folder without settings: the night tuned itself
    assert "learned blend" in report["night"]
    assert set(report["figures"]) == {"served", "personal_top_frequency", "tifu_knn", "tifu_knn_dunnhumby"}
    assert all(0 < f["ndcg@10"] <= 1 for f in report["figures"].values())
    for name, gains in report["served_against"].items():
        served, other = report["figures"]["served"]["recall@10"], report["figures"][name]["recall@10"]
        assert abs(gains["recall@10"]["gain"] - (served / other - 1)) < 2e-3
    assert "served vs tifu_knn" in done.stdout
