"""The evaluation runner: hand-computed figures on a tiny log, no leakage, the JSON layout, the report and the CLI."""

from __future__ import annotations

import json
import math
from datetime import timedelta

import pytest
from factories import NOW, catalogue, ev, events
from typer.testing import CliRunner

from recommender.config import AlsParams, ModelSettings
from recommender.data.demo import generate_shop
from recommender.evaluation.html_report import render
from recommender.evaluation.protocol import (
    MODELS,
    build_context,
    evaluate_context,
    evaluate_events,
    fit_models,
    model_lists,
    narrow,
)
from recommender.models.als_recommender import AlsRecommender
from recommender.serving.production import ProductionModel

P, V = "purchase", "view"
SMALL = ModelSettings(als=AlsParams(factors=2, iterations=3))

# Train: everything more than 10 days before the newest event; test: the last 10 days.
LOG = events(
    [
        ev("u1", "a", P, 30),
        ev("u1", "b", P, 25),
        ev("u1", "a", P, 20),
        ev("u2", "a", P, 28),
        ev("u2", "c", P, 22),
        ev("u3", "c", P, 27),
        ev("u3", "d", P, 21),
        ev("u4", "a", V, 26),
        # test window
        ev("u1", "b", P, 5),
        ev("u1", "e", P, 3),  # e exists only after the cut-off
        ev("u2", "d", P, 4),
        ev("u5", "a", P, 2),  # cold
        ev("u3", "e", V, 0),
    ]
)
ITEMS = catalogue([{"item_id": i} for i in "abcde"])


@pytest.fixture(scope="module")
def tiny():
    ctx = build_context(LOG, ITEMS, test_days=10)
    return ctx, evaluate_context(ctx, SMALL)


def test_split_groups_and_truth(tiny) -> None:
    ctx, _ = tiny
    assert ctx.split.cutoff == NOW - timedelta(days=10)
    assert ctx.truth["purchase"] == {"u1": {"b", "e"}, "u2": {"d"}, "u5": {"a"}}
    assert ctx.truth["purchase_new"] == {"u1": {"e"}, "u2": {"d"}, "u5": {"a"}}
    assert ctx.truth["interaction"]["u3"] == {"e"}
    assert ctx.groups["warm"] == ["u1", "u2", "u3"] and ctx.groups["cold"] == ["u5"]
    assert (
        ctx.groups["warm:2-3"] == ["u1", "u2", "u3"] and "warm:1" not in ctx.groups
    )  # u4 did nothing after the cut-off
    assert ctx.catalogue == frozenset("abcd")


def test_hand_computed_popularity_figures(tiny) -> None:
    _, res = tiny
    # Global popularity: a (3 users), c (2), b, d (1 each, ties by id) -> [a, c, b, d] for everyone.
    pop = res.figures["purchase"]["warm"]["global_popularity"]
    assert pop["users"] == 2
    assert pop["recall@10"] == pytest.approx((1 / 2 + 1) / 2)  # u1 finds b of {b, e}; u2 finds d
    assert pop["precision@10"] == pytest.approx(0.1)
    u1 = (1 / math.log2(4)) / (1 + 1 / math.log2(3))
    u2 = 1 / math.log2(5)
    assert pop["ndcg@10"] == pytest.approx((u1 + u2) / 2)
    assert pop["coverage@10"] == pytest.approx(1.0)  # a, b, c, d of 4 recommendable items
    assert pop["seen_share@10"] == pytest.approx(0.5)  # two of four listed items were in each history
    # Items new to the customer: u1's list without a, b is [c, d] (no e); u2's without a, c is [b, d] -> hit at 2.
    new = res.figures["purchase_new"]["warm"]["global_popularity"]
    assert new["recall@10"] == pytest.approx(0.5)
    assert new["ndcg@10"] == pytest.approx((0 + 1 / math.log2(3)) / 2)
    assert new["seen_share@10"] == 0
    # The customer's own items: u1 [a (2 orders), b, then c, d]; u2 [c (more recent), a, b, d].
    top = res.figures["purchase"]["warm"]["personal_top_frequency"]
    assert top["recall@10"] == pytest.approx(0.75)
    assert top["ndcg@10"] == pytest.approx(((1 / math.log2(3)) / (1 + 1 / math.log2(3)) + 1 / math.log2(5)) / 2)
    # Cold u5 gets the bestsellers [a, c, b, d] from the production list: a at rank 1.
    cold = res.figures["purchase"]["cold"]["production"]
    assert cold["users"] == 1 and cold["ndcg@10"] == pytest.approx(1.0) and cold["recall@10"] == 1.0


def test_layout_models_and_groups(tiny) -> None:
    _, res = tiny
    assert set(res.figures) == {"purchase", "purchase_new", "interaction", "interaction_new"}
    assert set(res.figures["purchase"]["warm"]) == set(MODELS)
    assert not {"personal_top_frequency", "tifu_knn", "tifu_knn_tuned"} & set(res.figures["interaction"]["warm"])
    assert set(res.figures["purchase_new"]["warm"]) == {
        "als",
        "blend",  # the blended list without the customer's purchases: its discovery part
        "global_popularity",
        "recent_popularity",
        "item_knn_cosine",
        "item_knn_bm25",
    }
    assert not {"als", "als_new"} & set(res.figures["purchase"]["cold"])  # ALS has nothing for cold users
    assert "cold" not in res.figures["purchase_new"]
    for metric in ("precision", "recall", "ndcg", "map", "hit_rate", "coverage", "seen_share"):
        for k in (10, 20):
            assert 0 <= res.figures["purchase"]["warm"]["production"][f"{metric}@{k}"] <= 1
    assert res.main() == res.figures["purchase"]["warm"]["production"]["ndcg@10"]
    assert res.meta["blend"]["chosen"] is False and "skipped" in res.meta["blend"]  # too short a log to learn on
    json.dumps(res.as_dict())  # JSON-ready


def test_no_future_item_or_history_in_lists(tiny) -> None:
    ctx, _ = tiny
    fitted, _ = fit_models(ctx, SMALL, MODELS)
    inter = fitted["als"].fitted.inter
    assert "e" not in set(inter.item_ids) and "u5" not in set(inter.user_ids)
    for model in MODELS:
        for new in (False, True):
            lists = model_lists(ctx, fitted[model], new=new)
            for group in lists.values():
                for user, items in group.items():
                    assert "e" not in items, (model, user)
                    if new:
                        assert not set(items) & ctx.history["purchase"].get(user, set()), (model, user)
    als_new = model_lists(ctx, fitted["als_new"])["warm"]
    assert not set(als_new["u1"]) & {"a", "b"}


def test_unavailable_items_never_listed() -> None:
    items = catalogue([{"item_id": i, "available": i != "a"} for i in "abcde"])
    ctx = build_context(LOG, items, test_days=10)
    res = evaluate_context(ctx, SMALL)
    fitted, _ = fit_models(ctx, SMALL, MODELS)
    for model in MODELS:
        for group in model_lists(ctx, fitted[model]).values():
            assert all("a" not in lst for lst in group.values()), model
    assert res.figures["purchase"]["cold"]["production"]["recall@10"] == 0  # u5 bought only the hidden a


@pytest.fixture(scope="module")
def shop():
    return generate_shop(n_users=300, n_items=120, days=120, seed=5)


def test_sampled_context_keeps_histories_of_the_sample_only(shop) -> None:
    """A context built for at most n scored users per pool has the same truth, figures and groups as the full
    context narrowed afterwards, and holds histories only for the sampled users."""
    targets = ("purchase", "purchase_new")
    full = build_context(shop.events, shop.items, test_days=14, targets=targets)
    scored = full.users_to_score()
    assert len(scored) > 40
    sampled = build_context(shop.events, shop.items, test_days=14, targets=targets, max_users=20)
    assert sampled.truth == narrow(full, max_users=20).truth
    users = set(sampled.users_to_score()) | set(sampled.users_to_score(cold=True))
    assert len(sampled.users_to_score()) == 20
    assert set(sampled.history["purchase"]) <= users < set(full.history["interaction"]) | set(full.truth["purchase"])
    assert all(sampled.history[k][u] == full.history[k][u] for k in sampled.history for u in sampled.history[k])
    assert (
        evaluate_context(sampled, SMALL, ("production",)).figures
        == evaluate_context(narrow(full, max_users=20), SMALL, ("production",)).figures
    )


def test_demo_shop_production_beats_popularity(shop) -> None:
    res = evaluate_events(shop.events, shop.items, test_days=21, models=("production", "als", "recent_popularity"))
    warm = res.figures["purchase"]["warm"]
    assert warm["production"]["ndcg@10"] > warm["recent_popularity"]["ndcg@10"]
    assert res.figures["purchase_new"]["warm"]["als"]["ndcg@10"] > 0
    assert (
        res.meta["cutoff"] < res.meta["end"]
        and res.meta["train_events"] + res.meta["test_events"] == shop.events.num_rows
    )


def test_lists_at_several_repeat_shares_are_the_served_lists_at_each(shop) -> None:
    ctx = build_context(shop.events, shop.items, test_days=21)
    warm, k = ctx.users_to_score(), 10
    als = AlsRecommender(SMALL.als, SMALL.weights.as_dict(), SMALL.half_life_days).fit(
        ctx.split.train, items=shop.items
    )
    model = ProductionModel(SMALL).fit(ctx.split.train, items=shop.items, als=als)
    shares = (0.5, 0.8, 1.0)
    lists = model.at_shares(warm + ["nobody"], k, shares, als.ranked(warm, k, als.fitted.bought))
    for share in shares:
        alone = ProductionModel(SMALL.with_repeat_share(share)).fit(ctx.split.train, items=shop.items, als=als)
        assert lists[share] == alone.recommend(warm + ["nobody"], k), share
    assert lists[0.5] != lists[1.0] and lists[0.5]["nobody"] == model.recommend(["nobody"], k)["nobody"]


def test_report_is_self_contained(tiny) -> None:
    _, res = tiny
    page = render(res.as_dict(), "tiny")
    assert page.count("data:image/png;base64,") >= 3
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "personal_top_frequency" in page and "ndcg@10" in page


def test_cli_evaluate_and_tune(shop, tmp_path) -> None:
    from training.cli import app

    shop.write(tmp_path / "shop")
    runner = CliRunner()
    ev_file, it_file = str(tmp_path / "shop" / "events.csv"), str(tmp_path / "shop" / "items.csv")
    settings = tmp_path / "tuned.json"
    result = runner.invoke(
        app,
        [
            "tune",
            "--events",
            ev_file,
            "--items",
            it_file,
            "--test-days",
            "14",
            "--trials",
            "2",
            "--out",
            str(settings),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert settings.exists()
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--events",
            ev_file,
            "--items",
            it_file,
            "--test-days",
            "14",
            "--k",
            "5",
            "--settings",
            str(settings),
            "--model",
            "production",
            "--model",
            "recent_popularity",
            "--json",
            str(tmp_path / "e.json"),
            "--html",
            str(tmp_path / "e.html"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "e.json").read_text())
    assert set(doc["figures"]["purchase"]["warm"]) == {"production", "recent_popularity"}
    assert "ndcg@5" in doc["figures"]["purchase"]["warm"]["production"]
    next_basket = doc["figures"]["next_basket"]["warm"]
    assert {"next_purchase", "personal_top_frequency"} <= set(next_basket) and "recall@5" in next_basket[
        "next_purchase"
    ]
    assert doc["meta"]["params"]["repeat_share"] == json.loads(settings.read_text())["settings"]["repeat_share"]
    assert (tmp_path / "e.html").read_text().startswith("<!doctype html>")
    bad = runner.invoke(app, ["evaluate", "--events", ev_file, "--model", "nope"])
    assert bad.exit_code == 2 and "--model" in bad.output


def test_served_list_is_paired_with_every_other_model(shop) -> None:
    """meta["served"]: the served list's relative gain over each other model is the difference of their figures
    (the same warm users), with a standard error; on the new-item target the served list is ALS's."""
    res = evaluate_events(
        shop.events,
        shop.items,
        SMALL,
        test_days=21,
        ks=(10,),
        targets=("purchase", "purchase_new"),
        models=("production", "personal_top_frequency", "recent_popularity"),
    )
    served = res.meta["served"]
    assert served["purchase"]["model"] == "production" and served["purchase_new"]["model"] == "als"
    warm = res.figures["purchase"]["warm"]
    assert served["purchase"]["users"] == warm["production"]["users"]
    assert set(served["purchase"]["against"]) == {"personal_top_frequency", "recent_popularity"}
    for other, gains in served["purchase"]["against"].items():
        for metric in ("recall@10", "ndcg@10"):
            expected = warm["production"][metric] / warm[other][metric] - 1
            assert gains[metric]["gain"] == pytest.approx(expected, abs=1e-4)
            assert gains[metric]["stderr"] > 0 and gains[metric]["z"] == pytest.approx(
                gains[metric]["gain"] / gains[metric]["stderr"], rel=0.02
            )
    assert set(served["purchase_new"]["against"]) == {"recent_popularity"}


def test_cli_evaluate_as_the_job_would_tune_itself_on_a_shorter_history(shop, tmp_path) -> None:
    """--last-days keeps the log's last days only; --self-tune evaluates the settings the job's own search picks on
    the training events (and says so), and refuses a settings file beside it."""
    from training.cli import app

    shop.write(tmp_path / "shop")
    ev_file, it_file = str(tmp_path / "shop" / "events.csv"), str(tmp_path / "shop" / "items.csv")
    args = ["evaluate", "--events", ev_file, "--items", it_file, "--test-days", "14", "--k", "10", "--no-progress"]
    args += ["--model", "production", "--model", "recent_popularity", "--target", "purchase", "--no-next-basket"]
    runner = CliRunner()
    result = runner.invoke(app, [*args, "--self-tune", "--last-days", "100", "--json", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "e.json").read_text())
    newest = max(shop.events["timestamp"].to_pylist())
    kept = sum(t > newest - timedelta(days=100) for t in shop.events["timestamp"].to_pylist())
    assert doc["meta"]["train_events"] + doc["meta"]["test_events"] == kept < shop.events.num_rows
    tuned = doc["meta"]["self_tuned"]
    assert tuned["settings"]["als"]["factors"] == doc["meta"]["params"]["als"]["factors"]
    assert tuned["settings"]["repeat_share"] == doc["meta"]["params"]["repeat_share"]
    assert tuned["validation"]["end"] <= doc["meta"]["cutoff"]
    assert "self-tuning: tuned" in result.output and "the served list (production)" in result.output
    short = runner.invoke(app, [*args, "--self-tune", "--last-days", "40"])
    assert short.exit_code == 0 and "not self-tuned: less than 74 days of history" in short.output
    both = runner.invoke(app, [*args, "--self-tune", "--settings", str(tmp_path / "any.json")])
    assert both.exit_code == 2 and "--settings" in both.output


def test_short_served_lists_are_topped_up_with_bestsellers_as_the_api_does() -> None:
    """A customer whose only event before the cut-off is a return is warm but has no picks: the API answers with the
    bestsellers, and so does the evaluated list; a customer with fewer picks than asked gets the bestsellers after
    them, never an item twice nor one the new-item target leaves out (before the fix: an empty list, and a list of
    two)."""
    log = events(
        [
            *(ev(f"b{n}", "a", P, 20 + n % 3) for n in range(6)),
            *(ev(f"b{n}", "b", P, 21) for n in range(4)),
            *(ev(f"b{n}", "c", P, 22) for n in range(2)),
            ev("r", "a", "return", 15),
            ev("one", "c", P, 18),
            ev("r", "b", P, 2),
            ev("one", "a", P, 1),
        ]
    )
    items = catalogue([{"item_id": i} for i in "abc"])
    ctx = build_context(log, items, test_days=10, targets=("purchase", "purchase_new"), ks=(3,))
    assert {"r", "one"} <= set(ctx.split.warm_users)
    model = fit_models(ctx, SMALL, ["production"])[0]["production"]
    best = model.recommend(["nobody"], 3)["nobody"]
    assert best == ["a", "b", "c"]
    lists = model.recommend(["r", "one"], 3)
    assert lists["r"] == best
    assert sorted(lists["one"]) == ["a", "b", "c"]
    assert sorted(model.recommend_excluding(["one", "r"], 3, {"one": {"c"}, "r": {"a"}})["one"]) == ["a", "b"]
    assert model.recommend_excluding(["r"], 3, {"r": {"a"}})["r"] == ["b", "c"]
