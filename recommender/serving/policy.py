"""The one serving policy: what a customer is shown, used alike by the nightly job, the API and the evaluation.

Offline part: the personal list and the next-purchase list the job publishes (and the evaluation scores, by calling
the same functions). Online part: how a request composes the published list with live events, filters and the
bestseller top-up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from collections.abc import Set as AbstractSet

from recommender.config import ListParams
from recommender.models.repeat import DueSource, NextPick, Pick, as_next_pick, pick_dict, pick_id, pick_pair
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
    for pair in explore[x:]:
        if len(picks) >= n:
            break
        if pair[0] not in taken:
            picks.append(pair)
            taken.add(pair[0])
    return picks


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
    p = params
    personal = production_picks(due, user_id, ranked, p.list_size, p.personal_repeat_share, frozenset(unavailable))
    if p.exclude_purchased:
        explore = ranked
    else:
        mine = bought()
        explore = [r for r in ranked if r[0] not in mine]
    nxt = next_purchase_picks(due, user_id, explore, p.list_size, p.next_purchase_explore_share)
    return [pick_pair(x) for x in personal], [pick_dict(x) for x in nxt]
