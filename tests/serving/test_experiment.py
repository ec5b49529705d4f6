"""Control-group assignment and recommendation ids."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

from recommender.serving.experiment import CONTROL, TREATMENT, make_rec_id, parse_rec_id, variant_of


def test_control_share_holds_within_one_point_over_100000_ids():
    share = sum(variant_of(f"customer-{k}", "salt-1", 0.1) == CONTROL for k in range(100_000)) / 100_000
    assert abs(share - 0.1) <= 0.01


def test_no_control_group_when_the_share_is_zero():
    assert {variant_of(f"c{k}", "s", 0.0) for k in range(1000)} == {TREATMENT}


def test_assignment_is_the_same_in_another_process_and_changes_with_the_salt():
    ids = [f"c{k}" for k in range(2000)]
    here = "".join("c" if variant_of(i, "shop", 0.1) == CONTROL else "t" for i in ids)
    code = (
        "from recommender.serving.experiment import variant_of;"
        "print(''.join('c' if variant_of(f'c{k}', 'shop', 0.1) == 'control' else 't' for k in range(2000)))"
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert here == there
    other = "".join("c" if variant_of(i, "other-salt", 0.1) == CONTROL else "t" for i in ids)
    assert other != here


def test_rec_id_round_trip_and_garbage():
    at = datetime(2026, 12, 1, 10, 30, 15, 250000)
    rid = make_rec_id("recommend", "20261201T000000Z-abc123", CONTROL, at)
    parsed = parse_rec_id(rid)
    assert parsed is not None and (parsed.kind, parsed.version, parsed.variant) == (
        "recommend",
        "20261201T000000Z-abc123",
        CONTROL,
    )
    assert abs((parsed.at - at).total_seconds()) < 0.002
    assert parse_rec_id("not-a-rec-id") is None and parse_rec_id("") is None
