"""Adapters: turn a shop's own log format into the generic columns of the data contract.

Each adapter maps source columns to ``user_id, item_id, event_type, timestamp, quantity, price, order_id`` (and a
catalogue to ``item_id, title, category, price, available, created_at``) in one DuckDB query that keeps the row
number. Rows the format itself says are not customer interactions (guest lines, postage, coupon lines) are marked
in ``_excluded`` with the reason: they are counted in the summary, not treated as bad rows.

Formats:

``generic``
    Files already in the contract's column names (what ``reco demo-data`` writes).
``online-retail``
    UCI Online Retail invoice lines (``InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice,
    CustomerID, Country``). Invoices starting with ``C`` are cancellations: they become ``return`` events with
    positive quantity (never purchases). Lines without CustomerID (guest checkouts) and non-product codes
    (postage, fees, manual adjustments, gift vouchers) are excluded. The catalogue is derived from the lines:
    title = most frequent description, category = the product noun found in it (see ``RETAIL_CATEGORIES``).
``complete-journey``
    84.51 Complete Journey ``transactions`` (household_id, basket_id, product_id, quantity, sales_value,
    transaction_timestamp); ``--items`` takes its ``products`` table (category = product_category, title from
    brand, type and size). Zero-quantity lines (coupon or adjustment lines) are excluded.
``rees46``
    REES46 e-commerce behaviour log (``event_time, event_type, product_id, category_id, category_code, brand, price,
    user_id, user_session``); ``remove_from_cart`` is excluded; purchases of one session form one order. The
    catalogue is derived from the events (category = category_code, else the category id).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from recommender.data.errors import DataError
from recommender.data.loading import connect, latest, require_columns
from recommender.data.reading import ROW, bad_rows_of, read_table, with_bad_rows


@dataclass
class RawInput:
    """Source rows renamed to the generic columns, not yet validated."""

    events: pa.Table
    items: pa.Table | None
    events_source: str
    items_source: str | None


def _query(sql: str, **tables: pa.Table) -> pa.Table:
    con = connect()
    for name, table in tables.items():
        con.register(name, table)
    return con.sql(sql).to_arrow_table()


def _rows_of(src: pa.Table, sql: str) -> pa.Table:
    """``sql`` over ``src`` (one output row per source row), keeping the lines skipped while reading ``src`` so
    that validation reports them."""
    return with_bad_rows(_query(sql, src=src), bad_rows_of(src))


def _generic(events_path: Path, items_path: Path | None) -> RawInput:
    events = read_table(events_path, "events")
    items = read_table(items_path, "items") if items_path else None
    return RawInput(events, items, events_path.name, items_path.name if items_path else None)


NON_PRODUCT_CODES = ("POST", "DOT", "M", "C2", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK", "PADS")
RETAIL_CATEGORIES = (
    "BAG",
    "MUG",
    "CUP",
    "CANDLE",
    "HOLDER",
    "LIGHTS",
    "LIGHT",
    "LANTERN",
    "CARD",
    "BOX",
    "TIN",
    "SIGN",
    "CUSHION",
    "CLOCK",
    "FRAME",
    "BOTTLE",
    "JAR",
    "BOWL",
    "PLATE",
    "TRAY",
    "NAPKINS",
    "CAKE",
    "PARTY",
    "DOORMAT",
    "WRAP",
    "STICKER",
    "NOTEBOOK",
    "PEN",
    "PENCIL",
    "BUNTING",
    "GARLAND",
    "DECORATION",
    "ORNAMENT",
    "HEART",
    "BIRD",
    "CHRISTMAS",
    "EASTER",
    "GLASS",
    "VASE",
    "BASKET",
    "UMBRELLA",
    "PURSE",
    "NECKLACE",
    "BRACELET",
    "EARRINGS",
    "RING",
    "HAIR",
    "KEY",
    "STORAGE",
    "TEA",
    "SPOON",
    "APRON",
    "TOWEL",
    "DOLL",
    "TOY",
    "GAME",
    "BOOK",
    "PAPER",
)


def _online_retail(events_path: Path, items_path: Path | None) -> RawInput:
    src = read_table(events_path, "events")
    cols = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"]
    require_columns(src, cols, f"{events_path.name} (online-retail format)")
    codes = ", ".join(f"'{c}'" for c in NON_PRODUCT_CODES)
    events = _rows_of(
        src,
        f"""
        SELECT {ROW},
          CAST(TRY_CAST(TRY_CAST(CustomerID AS DOUBLE) AS BIGINT) AS VARCHAR) AS user_id,
          upper(trim(CAST(StockCode AS VARCHAR))) AS item_id,
          CASE WHEN CAST(InvoiceNo AS VARCHAR) LIKE 'C%' THEN 'return' ELSE 'purchase' END AS event_type,
          InvoiceDate AS timestamp,
          -- a quantity that is not a number is left for validation to report
          CASE WHEN TRY_CAST(Quantity AS DOUBLE) IS NULL THEN CAST(Quantity AS VARCHAR)
               WHEN CAST(InvoiceNo AS VARCHAR) LIKE 'C%' THEN CAST(-TRY_CAST(Quantity AS DOUBLE) AS VARCHAR)
               ELSE CAST(TRY_CAST(Quantity AS DOUBLE) AS VARCHAR) END AS quantity,
          UnitPrice AS price,
          CAST(InvoiceNo AS VARCHAR) AS order_id,
          CASE WHEN CustomerID IS NULL OR trim(CAST(CustomerID AS VARCHAR)) = '' THEN 'guest line without CustomerID'
               WHEN upper(trim(CAST(StockCode AS VARCHAR))) IN ({codes})
                 OR lower(CAST(StockCode AS VARCHAR)) LIKE 'gift%'
                 THEN 'non-product line (postage, fee, adjustment, voucher)'
          END AS _excluded
        FROM src""",
    )
    cats = ", ".join(f"'{c}'" for c in RETAIL_CATEGORIES)
    items = _query(
        f"""
        WITH d AS (
          SELECT upper(trim(CAST(StockCode AS VARCHAR))) AS item_id, trim(Description) AS title, count(*) AS n
          FROM src WHERE Description IS NOT NULL AND trim(Description) <> ''
            AND upper(trim(CAST(StockCode AS VARCHAR))) NOT IN ({codes})
            AND lower(CAST(StockCode AS VARCHAR)) NOT LIKE 'gift%'
          GROUP BY 1, 2),
        best AS (SELECT item_id, first(title ORDER BY n DESC, title) AS title FROM d GROUP BY 1)  -- ties: A-Z
        SELECT row_number() OVER (ORDER BY item_id) AS {ROW}, item_id, title,
          coalesce(list_filter(string_split(regexp_replace(upper(title), '[^A-Z ]', ' ', 'g'), ' '),
                               lambda w: list_contains([{cats}], w))[-1], 'OTHER') AS category
        FROM best""",
        src=src,
    )
    return RawInput(events, items, events_path.name, f"{events_path.name} (derived catalogue)")


def _complete_journey(events_path: Path, items_path: Path | None) -> RawInput:
    src = read_table(events_path, "events")
    cols = ["household_id", "basket_id", "product_id", "quantity", "sales_value", "transaction_timestamp"]
    require_columns(src, cols, f"{events_path.name} (complete-journey format)")
    events = _rows_of(
        src,
        f"""
        SELECT {ROW}, CAST(household_id AS VARCHAR) AS user_id, CAST(product_id AS VARCHAR) AS item_id,
          'purchase' AS event_type, transaction_timestamp AS timestamp, quantity,
          CASE WHEN TRY_CAST(quantity AS DOUBLE) > 0 AND TRY_CAST(sales_value AS DOUBLE) >= 0
               THEN TRY_CAST(sales_value AS DOUBLE) / TRY_CAST(quantity AS DOUBLE) END AS price,
          CAST(basket_id AS VARCHAR) AS order_id,
          CASE WHEN TRY_CAST(quantity AS DOUBLE) = 0 THEN 'zero-quantity line (coupon or adjustment)' END AS _excluded
        FROM src""",
    )
    items = complete_journey_products(items_path) if items_path else None
    return RawInput(events, items, events_path.name, items_path.name if items_path else None)


def complete_journey_products(items_path: Path) -> pa.Table:
    """The complete-journey ``products`` table in generic catalogue columns (unvalidated)."""
    prod = read_table(items_path, "items")
    require_columns(prod, ["product_id"], f"{items_path.name} (complete-journey products)")
    has = set(prod.column_names)
    col = lambda c: f"NULLIF(trim(CAST({c} AS VARCHAR)), '')" if c in has else "NULL"
    return _rows_of(
        prod,
        f"""
        SELECT {ROW}, CAST(product_id AS VARCHAR) AS item_id,
          NULLIF(concat_ws(' ', {col("brand")}, {col("product_type")}, {col("package_size")}), '') AS title,
          coalesce({col("product_category")}, {col("department")}) AS category
        FROM src""",
    )


def _rees46(events_path: Path, items_path: Path | None) -> RawInput:
    src = read_table(events_path, "events")
    cols = ["event_time", "event_type", "product_id", "price", "user_id"]
    require_columns(src, cols, f"{events_path.name} (rees46 format)")
    has = set(src.column_names)
    session = "NULLIF(trim(CAST(user_session AS VARCHAR)), '')" if "user_session" in has else "NULL"
    code = "NULLIF(trim(CAST(category_code AS VARCHAR)), '')" if "category_code" in has else "NULL"
    cat_id = "NULLIF(trim(CAST(category_id AS VARCHAR)), '')" if "category_id" in has else "NULL"
    brand = "NULLIF(trim(CAST(brand AS VARCHAR)), '')" if "brand" in has else "NULL"
    events = _rows_of(
        src,
        f"""
        SELECT {ROW}, user_id, product_id AS item_id, event_type, event_time AS timestamp, price,
          CASE WHEN event_type = 'purchase' AND {session} IS NOT NULL
               THEN CAST(user_id AS VARCHAR) || '|' || {session} END AS order_id,
          CASE WHEN event_type = 'remove_from_cart'
               THEN 'remove_from_cart event (not an interest signal)' END AS _excluded
        FROM src""",
    )
    items = _query(
        f"""
        SELECT row_number() OVER (ORDER BY item_id) AS {ROW}, item_id,
          NULLIF(concat_ws(' ', {latest("b")}, {latest("split_part(cc, '.', -1)")}), '') AS title,
          {latest("coalesce(cc, cid)")} AS category
        FROM (SELECT NULLIF(trim(CAST(product_id AS VARCHAR)), '') AS item_id, {brand} AS b, {code} AS cc,
                     {cat_id} AS cid, CAST(event_time AS VARCHAR) AS ts FROM src)
        WHERE item_id IS NOT NULL GROUP BY item_id""",
        src=src,
    )
    if items_path:
        raise DataError(
            "The rees46 format derives its catalogue from the events; drop --items or use --format generic."
        )
    return RawInput(events, items, events_path.name, f"{events_path.name} (derived catalogue)")


FORMATS: dict[str, Callable[[Path, Path | None], RawInput]] = {
    "generic": _generic,
    "online-retail": _online_retail,
    "complete-journey": _complete_journey,
    "rees46": _rees46,
}


def read_input(events_path: Path | str, items_path: Path | str | None = None, fmt: str = "generic") -> RawInput:
    """Read events (and optionally a catalogue) of format ``fmt`` into generic, unvalidated columns."""
    if fmt not in FORMATS:
        raise DataError(f"Unknown format '{fmt}' (known: {', '.join(FORMATS)}).")
    return FORMATS[fmt](Path(events_path), Path(items_path) if items_path else None)
