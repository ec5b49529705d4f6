"""The learned blend: candidates from every source, features from the past only, the ranker and its fallback."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recommender.config import ModelSettings
from recommender.data.demo import generate_shop
from recommender.evaluation import blend_learning, metrics
from recommender.evaluation.blend_learning import (
    batches,
    blended,
    earlier_window,
    learn_blend,
    paired_gain,
    policy_lists,
    ranked_lists,
    split_halves,
)
from recommender.evaluation.split import targets, time_split
from recommender.models.als_recommender import AlsRecommender
from recommender.models.blend_candidates import FEATURES, CandidateBatch, CandidateSources, _flat, _union
from recommender.models.blend_ranker import RankerParams, labels, ranked_picks, train_ranker, with_fallback
from recommender.models.repeat import DUE_AGAIN, GOES_WITH, NextPick, repeat_candidates
from training.blend_step import blend_lists, published_lists

SETTINGS = ModelSettings.from_dict({"als": {"factors": 16, "iterations": 8}})


@pytest.fixture(scope="module")
def shop():
    shop = generate_shop(n_users=400, n_items=120, n_categories=6, days=120, seed=5, kind="grocery")
    split = time_split(shop.events, test_days=21)
    s = SETTINGS
    fit = AlsRecommender(s.als, s.weights.as_dict(), s.half_life_days).fit(split.train, items=shop.items).fitted
    repeats = repeat_candidates(split.train, fit.as_of, 30)
    return shop, split, fit, repeats


def test_candidates_come_from_every_source_and_skip_unavailable_items(shop) -> None:
    data, split, fit, repeats = shop
    bought = split.train.filter(pc.equal(split.train["event_type"], "purchase"))
    counts = pc.value_counts(bought["item_id"]).to_pylist()
    gone = {c["values"] for c in sorted(counts, key=lambda c: -c["counts"])[:5]}  # every source would name them
    items = data.items.set_column(
        data.items.schema.get_field_index("available"),
        "available",
        pa.array([i not in gone for i in data.items["item_id"].to_pylist()]),
    )
    hidden_fit = AlsRecommender(SETTINGS.als, SETTINGS.weights.as_dict(), SETTINGS.half_life_days)
    hidden_fit = hidden_fit.fit(split.train, items=items, als=None).fitted
    sources = CandidateSources(split.train, items, hidden_fit, repeats)
    users = sorted(pc.unique(split.train["user_id"]).to_pylist())[:60]
    batch = sources.batch(users)
    assert set(np.unique(batch.source).tolist()) >= {0, 1, 2}  # own, ALS, TIFU at least
    assert not gone & set(hidden_fit.inter.item_ids[batch.cols].tolist())
    bought = batch.X[:, FEATURES.index("bought_days")] > 0
    assert bought.any() and (~bought).any()
    # an own candidate is bought; an ALS or co-purchase candidate is not
    assert (bought[batch.source == 0]).all() and not bought[np.isin(batch.source, (1, 3))].any()
    for k, user in enumerate(batch.users):  # one row per distinct (customer, item)
        cols = batch.cols[batch.user_pos == k]
        assert len(cols) == len(set(cols.tolist())) > 10, user


def test_features_never_see_events_after_the_cutoff(shop) -> None:
    data, split, fit, repeats = shop
    users = sorted(pc.unique(split.train["user_id"]).to_pylist())[:80]
    past = CandidateSources(split.train, data.items, fit, repeats).batch(users)
    everything = CandidateSources(data.events, data.items, fit, repeats).batch(users)  # the judged window too
    assert np.array_equal(past.cols, everything.cols)
    np.testing.assert_allclose(past.X, everything.X, rtol=1e-6)


def test_the_ranker_learns_from_labels_and_needs_a_positive(shop) -> None:
    data, split, fit, repeats = shop
    sources = CandidateSources(split.train, data.items, fit, repeats)
    bought = split.test.filter(pc.equal(split.test["event_type"], "purchase"))
    truth = {}
    for u, i in zip(bought["user_id"].to_pylist(), bought["item_id"].to_pylist()):
        truth.setdefault(u, set()).add(i)
    batch = sources.batch(sorted(truth)[:150])
    y = labels(batch, fit.inter.item_ids, truth)
    assert 0 < y.sum() < len(y)
    with pytest.raises(ValueError, match="nothing to learn"):
        train_ranker(batch.X, np.zeros_like(y), batch.groups())
    ranker = train_ranker(batch.X, y, batch.groups())
    scores = ranker.score(batch)
    assert scores[y == 1].mean() > scores[y == 0].mean()  # it learnt what was bought
    picks = ranked_picks(batch, scores, fit.inter.item_ids, fit.as_of, 10)
    for listed in picks.values():
        assert len(listed) <= 10 and len({p.item_id for p in listed}) == len(listed)
        for p in listed:
            assert p.reason in (DUE_AGAIN, GOES_WITH) and (p.due is not None) == (p.reason == DUE_AGAIN)


def test_the_ranker_learns_alike_on_one_thread_and_on_several(shop) -> None:
    data, split, fit, repeats = shop
    sources = CandidateSources(split.train, data.items, fit, repeats)
    bought = split.test.filter(pc.equal(split.test["event_type"], "purchase"))
    truth: dict[str, set[str]] = {}
    for u, i in zip(bought["user_id"].to_pylist(), bought["item_id"].to_pylist()):
        truth.setdefault(u, set()).add(i)
    batch = sources.batch(sorted(truth)[:200])
    y = labels(batch, fit.inter.item_ids, truth)
    one, several = (train_ranker(batch.X, y, batch.groups(), RankerParams(threads=t)) for t in (1, 3))
    np.testing.assert_allclose(one.score(batch), several.score(batch), rtol=0, atol=1e-9)


def test_learning_judges_on_held_out_customers_and_falls_back(shop) -> None:
    data, split, fit, _ = shop
    outcome = learn_blend(split.train, split.test, data.items, fit, SETTINGS)
    r = outcome.report
    assert r["customers"]["learn"] > 0 and r["customers"]["judge"] > 0
    assert outcome.chosen == (r["gain"]["mean"] > 0 and r["gain"]["z"] >= SETTINGS.lists.blend_min_z == 1.645)
    assert r["gain"]["mean"] == pytest.approx(
        r["validation"]["blend"]["ndcg@10"] - r["validation"]["policy"]["ndcg@10"], abs=2e-5
    )
    assert set(r["importance"]) == set(FEATURES)
    # blend_min_z 0: any gain serves; a bar no gain reaches keeps the policy (same learning, same figures)
    for min_z, chosen in ((0.0, r["gain"]["mean"] > 0), (1e9, False)):
        settings = SETTINGS.model_copy(update={"lists": SETTINGS.lists.model_copy(update={"blend_min_z": min_z})})
        other = learn_blend(split.train, split.test, data.items, fit, settings)
        assert other.chosen == chosen and other.report["gain"] == r["gain"]
    nobody = split.test.filter(pc.equal(split.test["event_type"], "nothing"))
    empty = learn_blend(split.train, nobody, data.items, fit, SETTINGS)
    assert not empty.chosen and empty.ranker is None and "too few" in empty.report["skipped"]
    # customers enough, but what they bought in the window is no candidate of theirs: nothing to learn or judge
    bought = split.test.filter(pc.equal(split.test["event_type"], "purchase"))
    elsewhere = bought.set_column(
        bought.schema.get_field_index("item_id"), "item_id", pa.array(["not-in-the-catalogue"] * bought.num_rows)
    )
    missed = learn_blend(split.train, elsewhere, data.items, fit, SETTINGS)
    assert not missed.chosen and missed.ranker is None and "no candidate was bought" in missed.report["skipped"]
    # a blend that lost never builds the served lists
    lost = type(outcome)(outcome.ranker, False, {})
    assert blend_lists(lost, split.train, data.items, fit.inter, fit.model, fit.bought, fit.hidden, None, 10) is None


def test_each_half_is_judged_by_a_ranker_learnt_on_the_other_and_every_customer_counts_once(shop) -> None:
    data, split, fit, repeats = shop
    r = learn_blend(split.train, split.test, data.items, fit, SETTINGS, repeats=repeats).report
    truth = {u: t for u, t in targets(split.test, "purchase").items() if t and u in fit.inter.user_index}
    halves = split_halves(sorted(truth), 4000, 0)
    assert r["customers"]["judged"] == len(truth) == sum(map(len, halves)) and min(map(len, halves)) > 50
    sources = CandidateSources(split.train, data.items, fit, repeats)
    built = [batches(sources, half) for half in halves]
    rankers = [train_ranker(*blend_learning._training_rows(b, sources, truth)[:3]) for b in built]
    ndcg: dict[str, list[np.ndarray]] = {"blend": [], "policy": [], "in-sample": []}
    for k in (0, 1):
        other = halves[1 - k]
        policy = policy_lists(fit, repeats, other, SETTINGS.lists.list_size, SETTINGS.repeat_share)
        lists = {
            "blend": ranked_lists(built[1 - k], sources, rankers[k], policy, 10),
            "policy": policy,
            "in-sample": ranked_lists(built[1 - k], sources, rankers[1 - k], policy, 10),  # what it must not do
        }
        for name, found in lists.items():
            ids = {u: [p.item_id for p in picks] for u, picks in found.items()}
            ndcg[name].append(metrics.per_user("ndcg", ids, {u: truth[u] for u in other}, 10, other))
    mean = {name: float(np.concatenate(v).mean()) for name, v in ndcg.items()}
    assert r["validation"]["blend"]["ndcg@10"] == pytest.approx(mean["blend"], abs=1e-5)
    assert r["validation"]["policy"]["ndcg@10"] == pytest.approx(mean["policy"], abs=1e-5)
    assert abs(mean["in-sample"] - mean["blend"]) > 1e-3  # a ranker judged on its own customers would read apart


def test_an_earlier_window_teaches_every_ranker_and_judges_nobody(shop) -> None:
    """The window before the judged one: its buyers' rows join the halves' rankers (and the one that serves), the
    customers judged and the policy's figures stay those of the judged window."""
    data, split, fit, repeats = shop
    earlier = earlier_window(split.train, 21, data.items, SETTINGS)
    assert earlier is not None
    assert pc.max(earlier.window["timestamp"]).as_py() == pc.max(split.train["timestamp"]).as_py()
    assert pc.max(earlier.train["timestamp"]).as_py() < pc.min(earlier.window["timestamp"]).as_py()
    assert earlier.fit.as_of <= pc.min(earlier.window["timestamp"]).as_py()
    one = learn_blend(split.train, split.test, data.items, fit, SETTINGS, repeats=repeats).report
    with_earlier = {"repeats": repeats, "earlier": lambda: earlier}
    two = learn_blend(split.train, split.test, data.items, fit, SETTINGS, **with_earlier).report
    buyers = {u for u, t in targets(earlier.window, "purchase").items() if t and u in earlier.fit.inter.user_index}
    assert one["customers"]["earlier_window"] == 0 and two["customers"]["earlier_window"] == len(buyers) > 50
    assert two["customers"]["judged"] == one["customers"]["judged"]
    assert two["validation"]["policy"] == one["validation"]["policy"]
    assert two["validation"]["blend"] != one["validation"]["blend"]  # its rankers learnt from more rows
    assert two["rows"] > one["rows"]
    assert earlier_window(split.train, 60, data.items, SETTINGS) is None  # 99 days: no 60 days before 60 days
    one_window = ModelSettings.from_dict({"als": {"factors": 16, "iterations": 8}, "lists": {"blend_windows": 1}})
    assert earlier_window(split.train, 21, data.items, one_window) is None

    def no_fit() -> None:
        raise AssertionError("the earlier window was made for a window too small to learn from")

    nobody = split.test.slice(0, 0)
    skipped = learn_blend(split.train, nobody, data.items, fit, SETTINGS, earlier=no_fit).report
    assert "skipped" in skipped


def test_a_customer_of_both_windows_learns_only_with_the_half_that_does_not_judge_them(shop, monkeypatch) -> None:
    data, split, fit, repeats = shop
    earlier = earlier_window(split.train, 21, data.items, SETTINGS)
    built: list[list[str]] = []
    real = blend_learning.batches
    monkeypatch.setattr(
        blend_learning, "batches", lambda sources, users: built.append(list(users)) or real(sources, users)
    )
    learn_blend(split.train, split.test, data.items, fit, SETTINGS, repeats=repeats, earlier=lambda: earlier)
    halves, parts = built[:2], built[2:]  # the judged window's halves first, then the earlier window's two parts
    buyers = {u for u, t in targets(earlier.window, "purchase").items() if t and u in earlier.fit.inter.user_index}
    assert set(parts[0]) | set(parts[1]) == buyers and not set(parts[0]) & set(parts[1])
    for k in (0, 1):  # half k's ranker learns from part k and judges half 1 - k
        assert set(halves[k]) & buyers <= set(parts[k]) and not set(parts[k]) & set(halves[1 - k])
    assert min(len(set(p) - set(halves[0]) - set(halves[1])) for p in parts) > 0  # the others dealt to both


def test_the_blend_needs_a_gain_clear_of_the_noise_between_customers() -> None:
    rng = np.random.default_rng(3)
    policy = rng.uniform(0, 1, 2000)
    noisy = policy + rng.normal(0.0, 0.3, 2000)  # no real gain: customers only scatter around the policy
    clear = policy + 0.05 + rng.normal(0.0, 0.3, 2000)  # 0.05 better on average, 0.3 of scatter: z about 7
    clear_gain_z = SETTINGS.lists.blend_min_z
    assert abs(paired_gain(noisy, policy)["z"]) < clear_gain_z
    gain = paired_gain(clear, policy)
    assert gain["z"] > clear_gain_z and gain["mean"] == pytest.approx(0.05, abs=0.02)
    assert paired_gain(policy, policy) == {"mean": 0.0, "stderr": 0.0, "z": 0.0}
    assert paired_gain(policy[:1] + 1, policy[:1])["z"] == 0.0  # one customer: nothing to judge the noise by


def test_the_candidate_union_keeps_each_item_once_with_its_first_source() -> None:
    picks = [
        [np.array([5, 2]), np.array([], dtype=np.int64)],  # own
        [np.array([2, 7, 9]), np.array([4])],  # ALS: item 2 of customer 0 was named by "own" first
        [np.array([9, 1]), np.array([4, 3])],  # TIFU
    ]
    user_pos, cols, source = _union([_flat(p) for p in picks])
    assert user_pos.tolist() == [0, 0, 0, 0, 0, 1, 1]
    assert cols.tolist() == [1, 2, 5, 7, 9, 3, 4]  # ascending within a customer
    assert source.tolist() == [2, 0, 0, 1, 1, 2, 1]


def test_labels_mark_exactly_the_candidates_each_customer_bought(shop) -> None:
    _, _, fit, _ = shop
    ids = fit.inter.item_ids
    batch = CandidateBatch(
        ["a", "b", "c"], np.array([0, 0, 1, 1, 2]), np.array([0, 1, 0, 2, 1]), np.zeros((5, len(FEATURES))), None
    )
    truth = {"a": {str(ids[1]), "not-in-the-catalogue"}, "b": {str(ids[0])}, "z": {str(ids[1])}}
    assert labels(batch, ids, truth).tolist() == [0, 1, 1, 0, 0]  # "c" bought nothing; "z" has no candidates


def test_ranked_picks_take_each_customers_best_n_rows_ties_by_column(shop) -> None:
    _, _, fit, _ = shop
    X = np.zeros((5, len(FEATURES)), dtype=np.float32)
    X[1, FEATURES.index("bought_days")], X[1, FEATURES.index("repeat_score")] = 2, 0.5
    X[1, FEATURES.index("due_in_days")] = 3
    batch = CandidateBatch(["a", "b"], np.array([0, 0, 0, 1, 1]), np.array([4, 2, 3, 1, 0]), X, None)
    picks = ranked_picks(batch, np.array([0.1, 0.9, 0.1, 0.0, 0.0]), fit.inter.item_ids, fit.as_of, 2)
    ids = fit.inter.item_ids
    assert [p.item_id for p in picks["a"]] == [ids[2], ids[3]]  # best score, then the tie by lower column
    assert [p.item_id for p in picks["b"]] == [ids[0], ids[1]]
    assert picks["a"][0].reason == DUE_AGAIN and picks["a"][0].due is not None
    assert picks["a"][1].reason == GOES_WITH and picks["a"][1].due is None


def test_a_tuned_repeat_share_below_one_is_judged_in_the_policy_and_one_set_for_the_lists_keeps_it(shop) -> None:
    data, split, fit, _ = shop
    half = SETTINGS.with_repeat_share(0.5)
    tuned = learn_blend(split.train, split.test, data.items, fit, half, share_is_rule=False)
    assert "skipped" not in tuned.report and tuned.ranker is not None
    free = learn_blend(split.train, split.test, data.items, fit, SETTINGS, share_is_rule=False)
    assert tuned.report["validation"]["blend"] == free.report["validation"]["blend"]  # the ranker has no such rule
    assert tuned.report["validation"]["policy"] != free.report["validation"]["policy"]  # the policy keeps its share
    ruled = learn_blend(split.train, split.test, data.items, fit, half)  # set by the operator: a rule
    assert not ruled.chosen and ruled.ranker is None and "rule" in ruled.report["skipped"]


def test_lists_from_batches_built_once_equal_lists_built_afresh(shop) -> None:
    data, split, fit, repeats = shop
    sources = CandidateSources(split.train, data.items, fit, repeats)
    users = sorted(pc.unique(split.test["user_id"]).to_pylist())[:120]
    built = batches(sources, users)
    truth = {u: {str(fit.inter.item_ids[0])} for u in users}
    X = np.concatenate([b.X for b in built])
    y = np.concatenate([labels(b, fit.inter.item_ids, truth) for b in built])
    y[:: max(len(y) // 50, 1)] = 1
    ranker = train_ranker(X, y, np.concatenate([b.groups() for b in built]))
    fallback = {u: [] for u in users}
    assert ranked_lists(built, sources, ranker, fallback, 10) == blended(sources, ranker, users, fallback, 10)


def test_builders_side_by_side_give_the_lists_of_one(shop, monkeypatch) -> None:
    data, split, fit, repeats = shop
    users = sorted(pc.unique(split.test["user_id"]).to_pylist())[:150]
    built = batches(CandidateSources(split.train, data.items, fit, repeats), users)
    truth = {u: {str(fit.inter.item_ids[0])} for u in users}
    y = np.concatenate([labels(b, fit.inter.item_ids, truth) for b in built])
    y[:: max(len(y) // 50, 1)] = 1
    ranker = train_ranker(np.concatenate([b.X for b in built]), y, np.concatenate([b.groups() for b in built]))
    fallback = {u: [] for u in users}
    monkeypatch.setattr(blend_learning, "BATCH", 7)  # many batches of uneven size, the last one shorter
    lists = {}
    for builders in (1, 3):
        monkeypatch.setattr(blend_learning, "BUILDERS", builders)
        sources = CandidateSources(split.train, data.items, fit, repeats)  # fresh work arrays
        lists[builders] = blended(sources, ranker, users, fallback, 20)
    assert len(lists[1]) > 100 and lists[3] == lists[1]  # customers the fit knows


def test_published_lists_ask_for_the_policy_only_where_a_blended_list_is_short() -> None:
    ranked = {
        "full": [NextPick("a", 0.9, GOES_WITH), NextPick("b", 0.8, GOES_WITH)],
        "short": [NextPick("b", 0.7, GOES_WITH)],
    }
    asked: list[str] = []

    def policy(user: str):
        def picks_of():
            asked.append(user)
            return [("b", 0.5), ("c", 0.4)], [NextPick("b", 0.5, DUE_AGAIN, "2026-01-02"), ("c", 0.4)]

        return picks_of

    def blend(users, fallback):
        return {u: with_fallback(ranked[u], fallback[u], 2) for u in users}

    out = published_lists(blend, {"full": policy("full"), "short": policy("short")})
    assert asked == ["short"]
    assert out["full"] == (ranked["full"], ranked["full"])
    topped = [ranked["short"][0], NextPick("c", 0.4, GOES_WITH)]  # "b" taken already; the pair "c" as a pick
    assert out["short"] == (topped, topped)
