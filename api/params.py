"""Query and path parameters shared by the routes: their validation and their OpenAPI documentation."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from recommender.data.loading import ID_PATTERN
from recommender.data.schema import MAX_ID_LENGTH

N = Annotated[int, Query(ge=1, le=100, description="Number of items.")]
UserQ = Annotated[
    str,
    Query(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=ID_PATTERN,
        description="Visitor or customer id.",
        examples=["17850"],
    ),
]
OptUserQ = Annotated[
    str | None,
    Query(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, description="Personalise for this visitor."),
]
UserP = Annotated[
    str,
    Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, description="Customer id.", examples=["17850"]),
]
ItemP = Annotated[
    str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, description="Item id.", examples=["85123A"])
]
CategoryQ = Annotated[
    str | None, Query(min_length=1, max_length=200, description="Only items of this category.", examples=["HOLDER"])
]
ExcludeQ = Annotated[
    str | None, Query(max_length=20_000, description="Comma-separated item ids to leave out (e.g. the cart).")
]
