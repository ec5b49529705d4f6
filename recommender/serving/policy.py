"""The one serving policy: what a customer is shown, used alike by the nightly job, the API and the evaluation.

Offline part: the personal list and the next-purchase list the job publishes (and the evaluation scores, by calling
the same functions). Online part: how a request composes the published list with live events, filters and the
bestseller top-up.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime, timezone
from typing import Any, Protocol

from recommender.config import ListParams
from recommender.marketing.rfm import SEGMENTS
from recommender.models.repeat import DueSource, NextPick, Pick, as_next_pick, pick_dict, pick_id, pick_pair
from recommender.models.session import LiveEvent, reciprocal_rank_fusion
from recommender.serving.lists import Ranked

# --- offline: the lists the nightly job publishes --------------------------------------------------------------

DEFAULT_REPEAT_SHARE: float = ListParams.model_fields["personal_repeat_share"].default
"""Share of the personal list's slots open to items due again before discovery must take one
(:func:`merge_due_and_discovery` with ``explore_share = 1 - repeat_share``). 1.0: discovery takes the slots no due
item fills with a likely enough pick; tuned per data set (see :mod:`recommender.evaluation.tuning`)."""

DEFAULT_MIN_DUE_SCORE = 0.05
"""Items due again below this repeat probability leave their slot to discovery."""


def merge_due_and_discovery(due: list[NextPick], explore: Ranked, n: int, explore_share: float = 0.0) -> list[Pick]:
    """Items due again interleaved with discovery picks, ``n`` at most; discovery pairs stay ``(item_id, score)``
    (cheap at millions of users).

    While both sources last, each slot goes to discovery when the share asks for it (every prefix holds
    ``floor(explore_share * length)`` discovery picks); after that the source left fills the list in order. An item
    already taken is skipped wherever it comes again.
    """
    share = min(max(float(explore_share), 0.0), 1.0)
    taken: set[str] = set()
    picks: list[Pick] = []
    d = x = explored = 0
    while len(picks) < n and d < len(due) and x < len(explore):
        if math.floor(share * (len(picks) + 1) + 1e-9) > explored:
            pair = explore[x]
            x += 1
            if pair[0] not in taken:
                picks.append(pair)
                taken.add(pair[0])
                explored += 1
        else:
            pick = due[d]
            d += 1
            if pick.item_id not in taken:
                picks.append(pick)
                taken.add(pick.item_id)
    for pick in due[d:]:
        if len(picks) >= n:
            break
        if pick.item_id not in taken:
            picks.append(pick)
            taken.add(pick.item_id)
    _fill_with_discovery(picks, taken, explore[x:], n)
    return picks


def _fill_with_discovery(picks: list[Pick], taken: set[str], explore: Ranked, n: int) -> None:
    """Append the pairs of ``explore`` not ``taken``, in order and each item once, until ``picks`` holds ``n``. The
    usual discovery list (a top-k, no item twice) goes in as one slice: this runs for every customer with purchases
    each night."""
    room = n - len(picks)
    if room <= 0:
        return
    fresh = [pair for pair in explore if pair[0] not in taken] if taken else list(explore)
    if len({pair[0] for pair in fresh}) == len(fresh):
        picks.extend(fresh[:room])
        return
    for pair in fresh:
        if len(picks) >= n:
            break
        if pair[0] not in taken:
            picks.append(pair)
            taken.add(pair[0])


def production_picks(
    repeats: DueSource,
    user_id: str,
    explore: Ranked,
    n: int,
    repeat_share: float = DEFAULT_REPEAT_SHARE,
    unavailable: AbstractSet[str] = frozenset(),
) -> list[Pick]:
    """:func:`production_list` with discovery picks left as the ``(item_id, score)`` pairs of ``explore``."""
    share = min(max(float(repeat_share), 0.0), 1.0)
    if not unavailable:
        return merge_due_and_discovery(repeats.due_items(user_id, n), explore, n, explore_share=1.0 - share)
    wider = n + len(unavailable)
    picks = merge_due_and_discovery(repeats.due_items(user_id, wider), explore, wider, explore_share=1.0 - share)
    return [p for p in picks if pick_id(p) not in unavailable][:n]


def production_list(
    repeats: DueSource,
    user_id: str,
    explore: Ranked,
    n: int,
    repeat_share: float = DEFAULT_REPEAT_SHARE,
    unavailable: AbstractSet[str] = frozenset(),
) -> list[NextPick]:
    """The personal list of a customer with purchases: items due again blended with discovery, ``n`` at most.

    :func:`merge_due_and_discovery` with ``explore_share = 1 - repeat_share``: at least that share of every prefix is
    discovery when there is some, and slots no due item fills likely enough go to discovery. ``explore`` is the
    customer's ALS list without their purchases, best first (unavailable items already left out); ``unavailable``
    items are dropped from the due items too. A user without purchases is shown their ALS list as it is.
    """
    return [as_next_pick(p) for p in production_picks(repeats, user_id, explore, n, repeat_share, unavailable)]


def next_purchase_picks(
    repeats: DueSource,
    user_id: str,
    explore: Ranked,
    n: int,
    explore_share: float = 0.0,
    min_score: float = DEFAULT_MIN_DUE_SCORE,
) -> list[Pick]:
    """:func:`next_purchase` without wrapping discovery pairs."""
    return merge_due_and_discovery(repeats.due_items(user_id, n, min_score), explore, n, explore_share)


def next_purchase(
    repeats: DueSource,
    user_id: str,
    explore: Ranked,
    n: int,
    explore_share: float = 0.0,
    min_score: float = DEFAULT_MIN_DUE_SCORE,
) -> list[NextPick]:
    """The next-purchase list: items due again blended with ALS picks the customer has not bought ("goes with what
    you buy").

    Every prefix of the list holds ``floor(explore_share * length)`` exploration picks, so a shorter cut of it (the
    API's ``n``) keeps the share: with 0.3 the 4th, 7th and 10th picks explore. Due items come best first; slots
    they cannot fill (nothing else above ``min_score``) go to ``explore`` (the customer's ALS list without their
    purchases), and due items fill in when exploration runs out.

    The default share is 0: on the validation cut-offs of both real logs every top-10 slot reserved for exploration
    cost more repeat hits than it won new ones, so exploration takes the slots due items cannot fill with a
    likely enough pick (and the whole tail of a long list). Set a share to force discovery into the top.
    """
    return [as_next_pick(p) for p in next_purchase_picks(repeats, user_id, explore, n, explore_share, min_score)]


def purchaser_lists(
    due: DueSource,
    user_id: str,
    ranked: Ranked,
    bought: Callable[[], Collection[str]],
    params: ListParams,
    unavailable: Collection[str],
) -> tuple[list[tuple[str, float]], list[dict[str, object]]]:
    """What is published for a customer with purchases: (personal list as pairs, next-purchase list as dicts), from
    their ALS ``ranked`` list (unavailable items left out). A customer without purchases gets ``ranked`` as it is.

    ``bought()`` gives the items they bought; it is asked only when the ALS list may hold them (``exclude_purchased``
    off: the personal list lets ALS re-rank them), since next purchase explores only items not bought yet.
    """
    personal, nxt = purchaser_picks(due, user_id, ranked, bought, params, unavailable)
    return [pick_pair(x) for x in personal], [pick_dict(x) for x in nxt]


def purchaser_picks(
    due: DueSource,
    user_id: str,
    ranked: Ranked,
    bought: Callable[[], Collection[str]],
    params: ListParams,
    unavailable: Collection[str],
) -> tuple[list[Pick], list[Pick]]:
    """:func:`purchaser_lists` before the published shapes: (personal picks, next-purchase picks), due items as
    :class:`NextPick` and discovery as the pairs of ``ranked`` (the job encodes them without building dicts)."""
    p = params
    personal = production_picks(due, user_id, ranked, p.list_size, p.personal_repeat_share, frozenset(unavailable))
    if p.exclude_purchased:
        explore = ranked
    else:
        mine = bought()
        explore = [r for r in ranked if r[0] not in mine]
    return personal, next_purchase_picks(due, user_id, explore, p.list_size, p.next_purchase_explore_share)


# --- online: how a request composes the published lists ----------------------------------------------------------
# Plain functions on decoded values: the API fetches from Redis, calls these and answers; no HTTP and no Redis here.
# Entries are the stored JSON values: [item_id, score] pairs, or next-purchase dicts with "item_id".

SESSION_CANDIDATES = 100
"""How many live-session picks are folded in and blended before the category filter and the cut to n."""

Metadata = Mapping[str, Mapping[str, Any] | None]
"""Item id -> stored item metadata (title, category, price), None for items without any."""


class SessionRecommender(Protocol):
    """What the online policy needs of a session model (recommender.models.session.SessionModel)."""

    def recommend(self, events: Sequence[LiveEvent], n: int, now: datetime, exclude: Sequence[str] = ()) -> Ranked: ...


@dataclasses.dataclass
class Candidates:
    """A visitor's ranked candidates before the category filter, the cut to n and the top-up."""

    ranked: list[list[Any]]
    sources: list[str]
    skip: set[str]  # left out everywhere, the top-up included: the request's exclude plus items bought since the run


@dataclasses.dataclass
class Recommendation:
    source: str  # which lists answered, e.g. "personal+session+bestsellers"
    entries: list[list[Any]]  # [item_id, score] pairs, the picks first, then the bestseller top-up
    picked: int = 0  # how many entries are picks (the rest is the top-up)


def visitor_candidates(
    personal: list[list[Any]] | None,
    exclude: set[str],
    live_events: Sequence[LiveEvent] = (),
    session: SessionRecommender | None = None,
    exclude_purchased: bool = True,
    now: datetime | None = None,
) -> Candidates:
    """The published personal list with the live session blended in.

    ``exclude`` items are left out; with ``exclude_purchased`` (the job's own setting), so are items the visitor's
    live events bought since the last run. A visitor the model does not know gets the session picks alone (folded in
    from their live events by ``session``), a known one gets both merged by reciprocal-rank fusion."""
    skip = set(exclude)
    sources = ["personal"] if personal else []
    ranked: list[list[Any]] = [r for r in personal if r[0] not in skip] if skip and personal else personal or []
    if not live_events:
        return Candidates(ranked, sources, skip)
    if exclude_purchased:
        skip |= {item for kind, item, _ in live_events if kind == "purchase"}
        ranked = [r for r in ranked if r[0] not in skip]
    picks = session.recommend(live_events, SESSION_CANDIDATES, now or utc_now(), sorted(skip)) if session else []
    if picks:
        ranked = (
            [list(r) for r in reciprocal_rank_fusion([tuple(r) for r in ranked], picks, SESSION_CANDIDATES)]
            if ranked
            else [list(r) for r in picks]
        )
        sources.append("session")
    return Candidates(ranked, sources, skip)


def recommendation(
    candidates: Candidates,
    n: int,
    bestsellers: Callable[[], list[list[Any]] | None],
    category: str | None = None,
    metadata: Metadata | None = None,
) -> Recommendation:
    """The first ``n`` candidates (only those of ``category``, looked up in ``metadata``, when one is asked for),
    topped up with ``bestsellers`` (the category's own list when filtering) that are not picked or skipped.

    ``bestsellers`` is called only when a top-up is needed, so callers can decode the stored list lazily."""
    ranked = candidates.ranked
    if category is not None and ranked:
        ranked = [r for r in ranked if ((metadata or {}).get(r[0]) or {}).get("category") == category]
    picks = ranked[:n]
    fill: list[list[Any]] = []
    if len(picks) < n:
        taken = {r[0] for r in picks} | candidates.skip
        fill = [r for r in bestsellers() or [] if r[0] not in taken][: n - len(picks)]
    sources = candidates.sources if picks else []
    source = "+".join(sources + (["bestsellers"] if fill or not sources else []))
    return Recommendation(source, picks + fill, len(picks))


def utc_now() -> datetime:
    """Now in UTC as a naive datetime, the way live event times are kept."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def recently_viewed(live_events: Sequence[LiveEvent], n: int) -> list[list[Any]]:
    """Distinct viewed items of the visitor's live events (newest first), as [item_id, score] with score
    1/(rank+1)."""
    seen: list[str] = []
    for kind, item, _ in live_events:
        if kind == "view" and item not in seen:
            seen.append(item)
            if len(seen) == n:
                break
    return [[item, round(1.0 / (rank + 1), 5)] for rank, item in enumerate(seen)]


def arrivals_for(fresh: list[list[Any]], personal: list[list[Any]] | None, metadata: Metadata) -> list[list[Any]]:
    """New arrivals with those in the categories of the visitor's first 20 personal picks first (in the order the
    categories first appear there), otherwise in their stored order. ``metadata`` covers both lists' items."""
    liked = [(metadata.get(r[0]) or {}).get("category") for r in (personal or [])[:20]]
    rank = {c: i for i, c in reversed(list(enumerate(liked))) if c is not None}
    return sorted(fresh, key=lambda r: rank.get((metadata.get(r[0]) or {}).get("category"), len(rank)))


def segment_picks(
    segment: dict[str, Any] | None,
    picks: list[dict[str, Any]],
    personal: list[list[Any]] | None,
    fresh: list[list[Any]],
    best: list[list[Any]],
) -> tuple[str, list[dict[str, Any]]]:
    """A customer's e-mail list under their RFM segment's strategy (recommender.marketing.rfm.SEGMENTS): the strategy
    applied and the entries. ``picks`` is their next-purchase list, which already puts items due again first; a
    strategy whose list is empty falls back to it ("due_again")."""
    strategy = SEGMENTS[segment["segment"]].strategy if segment else "due_again"
    if strategy == "new_arrivals" and fresh:
        return strategy, [{"item_id": i, "score": sc, "reason": "new_arrival", "due": None} for i, sc in fresh]
    if strategy == "bestsellers" and best:
        return strategy, [{"item_id": i, "score": sc, "reason": "bestseller", "due": None} for i, sc in best]
    if strategy == "personal" and personal:
        return strategy, [
            {"item_id": i, "score": sc, "reason": "goes_with_your_purchases", "due": None} for i, sc in personal
        ]
    return "due_again", picks
