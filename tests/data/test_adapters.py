"""Source-format adapters (recommender.data.adapters) through validation and catalogue completion (load_dataset)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recommender.data.adapters import FORMATS, read_input
from recommender.data.dataset import load_dataset
from recommender.data.loading import BadRow, DataError, validate_events
from recommender.data.schema import EVENT_SCHEMA, ITEM_SCHEMA

GUEST = "guest line without CustomerID"
NON_PRODUCT = "non-product line (postage, fee, adjustment, voucher)"
ZERO_QTY = "zero-quantity line (coupon or adjustment)"
REMOVE = "remove_from_cart event (not an interest signal)"


pytestmark = pytest.mark.usefixtures("host_zone")


def event(user, item, kind, ts, quantity=1.0, price=None, order_id=None) -> dict:
    return {
        "user_id": user,
        "item_id": item,
        "event_type": kind,
        "timestamp": ts,
        "quantity": quantity,
        "price": price,
        "order_id": order_id,
    }


def item(item_id, title=None, category=None, price=None, available=True, created_at=None) -> dict:
    return {
        "item_id": item_id,
        "title": title,
        "category": category,
        "price": price,
        "available": available,
        "created_at": created_at,
    }


# --------------------------------------------------------------------------------------------------------------
# online-retail (UCI Online Retail; the real file is Parquet with these types)
# --------------------------------------------------------------------------------------------------------------

HOLDER = "WHITE HANGING HEART T-LIGHT HOLDER"
RETAIL_ROWS = [
    # InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID
    ("536365", "85123A", HOLDER, 6, datetime(2010, 12, 1, 8, 26), 2.55, 17850.0),  # 1
    ("536365", "71053", "WHITE METAL LANTERN", 6, datetime(2010, 12, 1, 8, 26), 3.39, 17850.0),  # 2
    ("536366", "85123a ", HOLDER, 2, datetime(2010, 12, 2, 9, 0), 2.65, 17850.0),  # 3 code normalised
    ("C536379", "85123A", "CREAM HANGING HEART T-LIGHT HOLDER", -1, datetime(2010, 12, 3, 10, 0), 2.65, 17850.0),  # 4
    ("536367", "85123A", HOLDER, 3, datetime(2010, 12, 4, 11, 0), 2.40, None),  # 5 guest
    ("536368", "POST", "POSTAGE", 1, datetime(2010, 12, 5), 18.0, 12583.0),  # 6 postage
    ("536369", "22633", "HAND WARMER UNION JACK", 4, datetime(2010, 12, 6), 1.85, 13047.0),  # 7
    ("536370", "gift_0001_20", "Dotcomgiftshop Gift Voucher £20.00", 1, datetime(2010, 12, 7), 17.0, 13047.0),  # 8
    ("C536371", "POST", "POSTAGE", -1, datetime(2010, 12, 8), 18.0, 12583.0),  # 9 cancelled postage
]
RETAIL_COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"]


def retail_parquet(path: Path, rows=RETAIL_ROWS) -> Path:
    cols = list(zip(*rows))
    table = pa.table(
        {
            "InvoiceNo": pa.array(cols[0], pa.string()),
            "StockCode": pa.array(cols[1], pa.string()),
            "Description": pa.array(cols[2], pa.string()),
            "Quantity": pa.array(cols[3], pa.int64()),
            "InvoiceDate": pa.array(cols[4], pa.timestamp("us")),
            "UnitPrice": pa.array(cols[5], pa.float64()),
            "CustomerID": pa.array(cols[6], pa.float64()),
            "Country": pa.array(["United Kingdom"] * len(rows), pa.string()),
        }
    )
    pq.write_table(table, path)
    return path


RETAIL_EVENTS = [
    event("17850", "85123A", "purchase", datetime(2010, 12, 1, 8, 26), 6.0, 2.55, "536365"),
    event("17850", "71053", "purchase", datetime(2010, 12, 1, 8, 26), 6.0, 3.39, "536365"),
    event("17850", "85123A", "purchase", datetime(2010, 12, 2, 9, 0), 2.0, 2.65, "536366"),
    event("17850", "85123A", "return", datetime(2010, 12, 3, 10, 0), 1.0, 2.65, "C536379"),
    event("13047", "22633", "purchase", datetime(2010, 12, 6), 4.0, 1.85, "536369"),
]


def test_online_retail_events(tmp_path):
    ds = load_dataset(retail_parquet(tmp_path / "online_retail.parquet"), fmt="online-retail")
    assert ds.events.schema == EVENT_SCHEMA
    assert ds.events.to_pylist() == RETAIL_EVENTS


def test_online_retail_cancellation_is_a_positive_return_never_a_purchase(tmp_path):
    ds = load_dataset(retail_parquet(tmp_path / "online_retail.parquet"), fmt="online-retail")
    cancelled = [r for r in ds.events.to_pylist() if r["order_id"].startswith("C")]
    assert cancelled == [event("17850", "85123A", "return", datetime(2010, 12, 3, 10, 0), 1.0, 2.65, "C536379")]
    purchases = [r for r in ds.events.to_pylist() if r["event_type"] == "purchase"]
    assert all(not r["order_id"].startswith("C") and r["quantity"] > 0 for r in purchases)


def test_online_retail_guest_and_non_product_lines_are_excluded_not_bad(tmp_path):
    ds = load_dataset(retail_parquet(tmp_path / "online_retail.parquet"), fmt="online-retail")
    events_report = ds.reports[0]
    assert events_report.source == "online_retail.parquet"
    assert events_report.excluded == {NON_PRODUCT: 3, GUEST: 1}
    assert (events_report.rows_read, events_report.rows_kept, events_report.rows_bad) == (9, 5, 0)
    assert events_report.bad_by_reason == {} and events_report.sample == []
    assert events_report.bad_share == 0.0
    assert {"POST", "GIFT_0001_20"}.isdisjoint(ds.events.column("item_id").to_pylist())


def test_online_retail_excluded_lines_do_not_count_towards_the_bad_share(tmp_path):
    # 12 guest lines, 4 good lines and one adjustment line with a negative quantity (not a 'C' invoice): 1 of 5
    # checked rows is bad (20%), although only 1 of 17 rows read.
    guest = [("536400", "22633", "HAND WARMER UNION JACK", 1, datetime(2010, 12, 9), 1.85, None)] * 12
    good = [("536401", "22633", "HAND WARMER UNION JACK", 1, datetime(2010, 12, 9, h), 1.85, 13047.0) for h in range(4)]
    bad = [("536402", "22633", "HAND WARMER UNION JACK", -2, datetime(2010, 12, 10), 1.85, 13047.0)]
    path = retail_parquet(tmp_path / "online_retail.parquet", guest + good + bad)

    with pytest.raises(DataError, match=r"1 of 5 rows are bad \(20\.0%, more than the allowed 5\.0%\)"):
        load_dataset(path, fmt="online-retail")
    ds = load_dataset(path, fmt="online-retail", max_bad_share=0.2)
    report = ds.reports[0]
    assert report.excluded == {GUEST: 12}
    assert report.sample == [BadRow(17, "quantity", "-2.0", "is not positive")]
    assert ds.events.num_rows == 4


def test_online_retail_csv_customer_id_with_decimal_becomes_integer_text(tmp_path):
    path = tmp_path / "online_retail.csv"
    path.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        f"536365,85123A,{HOLDER},6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
        "C536379,85123A,CREAM HANGING HEART T-LIGHT HOLDER,-1,2010-12-03 10:00:00,2.65,17850.0,United Kingdom\n"
        "536367,85123A,WHITE HANGING HEART T-LIGHT HOLDER,3,2010-12-04 11:00:00,2.40,,United Kingdom\n"
        "536368,POST,POSTAGE,1,2010-12-05 00:00:00,18.0,12583.0,France\n"
        "536369,22633,HAND WARMER UNION JACK,4,2010-12-06 00:00:00,1.85,13047,United Kingdom\n",
        encoding="utf-8",
    )
    ds = load_dataset(path, fmt="online-retail")
    assert ds.events.to_pylist() == [
        event("17850", "85123A", "purchase", datetime(2010, 12, 1, 8, 26), 6.0, 2.55, "536365"),
        event("17850", "85123A", "return", datetime(2010, 12, 3, 10, 0), 1.0, 2.65, "C536379"),
        event("13047", "22633", "purchase", datetime(2010, 12, 6), 4.0, 1.85, "536369"),
    ]
    assert ds.reports[0].excluded == {GUEST: 1, NON_PRODUCT: 1}
    assert ds.reports[0].rows_bad == 0


def test_online_retail_derived_catalogue(tmp_path):
    path = retail_parquet(tmp_path / "online_retail.parquet")
    raw = read_input(path, fmt="online-retail")
    assert raw.items_source == "online_retail.parquet (derived catalogue)"
    assert raw.items.select(["item_id", "title", "category"]).to_pylist() == [
        {"item_id": "22633", "title": "HAND WARMER UNION JACK", "category": "OTHER"},  # no known noun
        {"item_id": "71053", "title": "WHITE METAL LANTERN", "category": "LANTERN"},
        # 3 lines say WHITE (one of them a guest line), 1 says CREAM; the last known noun wins over HEART and LIGHT
        {"item_id": "85123A", "title": HOLDER, "category": "HOLDER"},
    ]

    ds = load_dataset(path, fmt="online-retail")
    assert ds.items.schema == ITEM_SCHEMA
    assert ds.items.to_pylist() == [
        item("22633", "HAND WARMER UNION JACK", "OTHER", 1.85, True, datetime(2010, 12, 6)),
        item("71053", "WHITE METAL LANTERN", "LANTERN", 3.39, True, datetime(2010, 12, 1, 8, 26)),
        item("85123A", HOLDER, "HOLDER", 2.65, True, datetime(2010, 12, 1, 8, 26)),
    ]


@pytest.mark.parametrize(
    "description, category",
    [
        ("WHITE HANGING HEART T-LIGHT HOLDER", "HOLDER"),
        ("SET OF 3 CAKE TINS PANTRY DESIGN", "CAKE"),
        ("JUMBO BAG RED RETROSPOT", "BAG"),
        ("REGENCY CAKESTAND 3 TIER", "OTHER"),
        ("PACK OF 72 RETROSPOT CAKE CASES", "CAKE"),
        ("ASSORTED COLOUR BIRD ORNAMENT", "ORNAMENT"),
        ("lunch bag red retrospot", "BAG"),
    ],
)
def test_online_retail_category_is_the_product_noun(tmp_path, description, category):
    rows = [("536365", "10001", description, 1, datetime(2010, 12, 1), 1.0, 12345.0)]
    raw = read_input(retail_parquet(tmp_path / "online_retail.parquet", rows), fmt="online-retail")
    assert raw.items.column("category").to_pylist() == [category]


def test_online_retail_tied_descriptions_give_the_same_title_whatever_the_row_order(tmp_path):
    lines = [
        ("536365", "10002", "ZINC HEART LANTERN", 1, datetime(2010, 12, 1), 1.0, 12345.0),
        ("536366", "10002", "CERAMIC HEART BOWL", 1, datetime(2010, 12, 2), 1.0, 12345.0),
    ]
    for order in (lines, lines[::-1]):
        raw = read_input(retail_parquet(tmp_path / "online_retail.parquet", order), fmt="online-retail")
        assert raw.items.select(["title", "category"]).to_pylist() == [
            {"title": "CERAMIC HEART BOWL", "category": "BOWL"}
        ]


def test_online_retail_non_numeric_quantity_is_a_bad_row(tmp_path):
    path = tmp_path / "online_retail.csv"
    path.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        f"536365,85123A,{HOLDER},six,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
        f"536366,85123A,{HOLDER},2,2010-12-01 08:28:00,2.55,17850.0,United Kingdom\n",
        encoding="utf-8",
    )
    raw = read_input(path, fmt="online-retail")
    events, report = validate_events(raw.events, raw.events_source)
    assert events.column("quantity").to_pylist() == [2.0]
    assert report.bad_by_reason == {"quantity is not a number": 1}
    assert [(b.row, b.field, b.value) for b in report.sample] == [(1, "quantity", "six")]


# --------------------------------------------------------------------------------------------------------------
# complete-journey (84.51 The Complete Journey; real files are Parquet with these types)
# --------------------------------------------------------------------------------------------------------------

TX = {
    "household_id": pa.array([900, 900, 900, 1228, 1228], pa.int64()),
    "store_id": pa.array([330, 330, 330, 406, 406], pa.int64()),
    "basket_id": pa.array([31198570044, 31198570044, 31198570044, 31198655051, 31198655051], pa.int64()),
    "product_id": pa.array([1095275, 9884484, 1041453, 1095275, 1041453], pa.int64()),
    "quantity": pa.array([2, 0, 4, 1, 1], pa.int64()),
    "sales_value": pa.array([2.5, 0.0, 3.0, 1.49, 0.8], pa.float64()),
    "retail_disc": pa.array([0.0, 1.0, 0.0, 0.0, 0.0], pa.float64()),
    "week": pa.array([1, 1, 1, 1, 1], pa.int64()),
    "transaction_timestamp": pa.array(
        [datetime(2017, 1, 1, 11, 53, 26)] * 3 + [datetime(2017, 1, 2, 9, 0)] * 2, pa.timestamp("ns")
    ),
}
PRODUCTS = {
    "product_id": pa.array([1095275, 1041453, 26190, 9884484], pa.int64()),
    "manufacturer_id": pa.array([2, 69, 4, 5], pa.int64()),
    "department": pa.array(["PASTRY", "GROCERY", "GROCERY", "GROCERY"]),
    "brand": pa.array(["National", None, "Private", "National"]),
    "product_category": pa.array(["ROLLS", None, "FROZEN PIZZA", "COUPON/MISC ITEMS"]),
    "product_type": pa.array(["ROLLS: BAGELS", "PASTA", "PIZZA/PREMIUM", None]),
    "package_size": pa.array(["4 OZ", None, "12 OZ", ""]),
}


def journey_files(tmp_path: Path) -> tuple[Path, Path]:
    pq.write_table(pa.table(TX), tmp_path / "transactions.parquet")
    pq.write_table(pa.table(PRODUCTS), tmp_path / "products.parquet")
    return tmp_path / "transactions.parquet", tmp_path / "products.parquet"


def test_complete_journey_events(tmp_path):
    tx, _ = journey_files(tmp_path)
    ds = load_dataset(tx, fmt="complete-journey")
    t1, t2 = datetime(2017, 1, 1, 11, 53, 26), datetime(2017, 1, 2, 9, 0)
    assert ds.events.to_pylist() == [
        event("900", "1095275", "purchase", t1, 2.0, 1.25, "31198570044"),  # price = 2.5 / 2
        event("900", "1041453", "purchase", t1, 4.0, 0.75, "31198570044"),  # price = 3.0 / 4
        event("1228", "1095275", "purchase", t2, 1.0, 1.49, "31198655051"),
        event("1228", "1041453", "purchase", t2, 1.0, 0.8, "31198655051"),
    ]
    (report,) = ds.reports
    assert report.excluded == {ZERO_QTY: 1}
    assert (report.rows_read, report.rows_kept, report.rows_bad) == (5, 4, 0)
    # Without --items the catalogue holds only bought items (the zero-quantity coupon line's product is not there).
    assert ds.items.column("item_id").to_pylist() == ["1041453", "1095275"]


def test_complete_journey_products_as_catalogue(tmp_path):
    tx, products = journey_files(tmp_path)
    raw = read_input(tx, products, fmt="complete-journey")
    assert raw.items_source == "products.parquet"

    ds = load_dataset(tx, products, fmt="complete-journey")
    assert [r.source for r in ds.reports] == ["transactions.parquet", "products.parquet"]
    assert ds.reports[1].rows_bad == 0
    assert ds.items.to_pylist() == [
        item("1041453", "PASTA", "GROCERY", 0.8, True, datetime(2017, 1, 1, 11, 53, 26)),  # no category: department
        item("1095275", "National ROLLS: BAGELS 4 OZ", "ROLLS", 1.49, True, datetime(2017, 1, 1, 11, 53, 26)),
        item("26190", "Private PIZZA/PREMIUM 12 OZ", "FROZEN PIZZA", None, True, None),  # never bought
        item("9884484", "National", "COUPON/MISC ITEMS", None, True, None),
    ]


def test_complete_journey_csv_transactions(tmp_path):
    path = tmp_path / "transactions.csv"
    path.write_text(
        "household_id,store_id,basket_id,product_id,quantity,sales_value,transaction_timestamp\n"
        "900,330,31198570044,1095275,2,2.5,2017-01-01 11:53:26\n"
        "900,330,31198570044,9884484,0,0,2017-01-01 11:53:26\n",
        encoding="utf-8",
    )
    ds = load_dataset(path, fmt="complete-journey")
    assert ds.events.to_pylist() == [
        event("900", "1095275", "purchase", datetime(2017, 1, 1, 11, 53, 26), 2.0, 1.25, "31198570044"),
    ]
    assert ds.reports[0].excluded == {ZERO_QTY: 1}


# --------------------------------------------------------------------------------------------------------------
# rees46 (REES46 behaviour log, CSV)
# --------------------------------------------------------------------------------------------------------------

REES_HEADER = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
S1 = "9333dfbd-b87a-4708-9857-6336556b0fcc"
S2 = "72d76fde-8bb3-4e00-8c23-a032dfed738c"
HEATER = "3900821,2053013552326770905,appliances.environment.water_heater,aqua,33.20,554748717"
REES_LINES = [
    f"2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,{S2}",
    f"2019-10-01 00:00:01 UTC,view,{HEATER},{S1}",
    f"2019-10-01 00:01:00 UTC,cart,{HEATER},{S1}",
    f"2019-10-01 00:01:30 UTC,remove_from_cart,{HEATER},{S1}",
    f"2019-10-01 00:02:00 UTC,purchase,{HEATER},{S1}",
    f"2019-10-01 00:02:00 UTC,purchase,44600062,2103807459595387724,,shiseido,35.79,554748717,{S1}",
    f"2019-10-01 01:00:00 UTC,purchase,44600062,2103807459595387724,,shiseido,36.00,554748717,{S2}",
    "2019-10-01 02:00:00 UTC,purchase,5100816,2053013553375346967,electronics.smartphone,,99.00,541312140,",
]


def rees_csv(path: Path, lines=REES_LINES) -> Path:
    path.write_text("\n".join([REES_HEADER, *lines]) + "\n", encoding="utf-8")
    return path


def test_rees46_events(tmp_path):
    ds = load_dataset(rees_csv(tmp_path / "events.csv"), fmt="rees46")
    ts = lambda h, m, s=0: datetime(2019, 10, 1, h, m, s)
    one_order = f"554748717|{S1}"
    assert ds.events.to_pylist() == [
        event("541312140", "44600062", "view", ts(0, 0), price=35.79),
        event("554748717", "3900821", "view", ts(0, 0, 1), price=33.2),
        event("554748717", "3900821", "cart", ts(0, 1), price=33.2),
        event("554748717", "3900821", "purchase", ts(0, 2), price=33.2, order_id=one_order),
        event("554748717", "44600062", "purchase", ts(0, 2), price=35.79, order_id=one_order),
        event("554748717", "44600062", "purchase", ts(1, 0), price=36.0, order_id=f"554748717|{S2}"),
        # no session: the loader derives user|timestamp
        event("541312140", "5100816", "purchase", ts(2, 0), price=99.0, order_id="541312140|2019-10-01T02:00:00"),
    ]
    (events_report, items_report) = ds.reports
    assert events_report.excluded == {REMOVE: 1}
    assert (events_report.rows_read, events_report.rows_kept, events_report.rows_bad) == (8, 7, 0)
    assert items_report.source == "events.csv (derived catalogue)"
    assert items_report.rows_bad == 0


def test_rees46_derived_catalogue(tmp_path):
    ds = load_dataset(rees_csv(tmp_path / "events.csv"), fmt="rees46")
    assert ds.items.to_pylist() == [
        item(
            "3900821",
            "aqua water_heater",
            "appliances.environment.water_heater",
            33.2,
            True,
            datetime(2019, 10, 1, 0, 0, 1),
        ),
        # no category_code: the category id
        item("44600062", "shiseido", "2103807459595387724", 36.0, True, datetime(2019, 10, 1)),
        item("5100816", "smartphone", "electronics.smartphone", 99.0, True, datetime(2019, 10, 1, 2)),
    ]


def test_rees46_bad_rows_keep_their_row_numbers(tmp_path):
    lines = REES_LINES[:3] + [
        "2019-10-01 00:03:00 UTC,view,3900821,2053013552326770905,,aqua,-1,554748717,s",
        "2019-10-01 00:04:00 UTC,wishlist,3900821,2053013552326770905,,aqua,1,554748717,s",
        "yesterday,view,3900821,2053013552326770905,,aqua,1,554748717,s",
    ]
    raw = read_input(rees_csv(tmp_path / "events.csv", lines), fmt="rees46")
    _, report = validate_events(raw.events, raw.events_source)
    assert report.sample == [
        BadRow(4, "price", "-1", "is negative"),
        BadRow(5, "event_type", "wishlist", "is not one of view, cart, purchase, return, impression, click"),
        BadRow(6, "timestamp", "yesterday", "is not a date-time"),
    ]


def test_rees46_rejects_an_items_file(tmp_path):
    events = rees_csv(tmp_path / "events.csv")
    (tmp_path / "items.csv").write_text("item_id\n1\n")
    with pytest.raises(DataError, match="rees46 format derives its catalogue from the events"):
        read_input(events, tmp_path / "items.csv", fmt="rees46")


# --------------------------------------------------------------------------------------------------------------
# Format selection and missing source columns
# --------------------------------------------------------------------------------------------------------------


def test_generic_format_passes_the_contract_columns_through(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,event_type,timestamp\nu1,i1,view,2026-01-02 03:04:05\n", encoding="utf-8")
    raw = read_input(path)
    assert raw.items is None and raw.events_source == "events.csv"
    assert raw.events.to_pylist() == [
        {"user_id": "u1", "item_id": "i1", "event_type": "view", "timestamp": "2026-01-02 03:04:05", "_row": 1}
    ]


def test_unknown_format_lists_the_known_ones(tmp_path):
    assert list(FORMATS) == ["generic", "online-retail", "complete-journey", "rees46"]
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path / "whatever.csv", fmt="shopify")
    assert str(err.value) == "Unknown format 'shopify' (known: generic, online-retail, complete-journey, rees46)."


@pytest.mark.parametrize("dropped", RETAIL_COLUMNS)
def test_online_retail_missing_source_column_names_it(tmp_path, dropped):
    path = retail_parquet(tmp_path / "online_retail.parquet")
    pq.write_table(pq.read_table(path).drop_columns([dropped]), path)
    with pytest.raises(DataError, match=rf"online_retail\.parquet \(online-retail format\) has no column '{dropped}'"):
        load_dataset(path, fmt="online-retail")


@pytest.mark.parametrize(
    "dropped", ["household_id", "basket_id", "product_id", "quantity", "sales_value", "transaction_timestamp"]
)
def test_complete_journey_missing_source_column_names_it(tmp_path, dropped):
    tx, _ = journey_files(tmp_path)
    pq.write_table(pq.read_table(tx).drop_columns([dropped]), tx)
    with pytest.raises(
        DataError, match=rf"transactions\.parquet \(complete-journey format\) has no column '{dropped}'"
    ):
        load_dataset(tx, fmt="complete-journey")


def test_complete_journey_products_without_product_id(tmp_path):
    tx, products = journey_files(tmp_path)
    pq.write_table(pq.read_table(products).drop_columns(["product_id"]), products)
    with pytest.raises(DataError, match=r"products\.parquet \(complete-journey products\) has no column 'product_id'"):
        load_dataset(tx, products, fmt="complete-journey")


@pytest.mark.parametrize("dropped", ["event_time", "event_type", "product_id", "price", "user_id"])
def test_rees46_missing_source_column_names_it(tmp_path, dropped):
    cols = REES_HEADER.split(",")
    keep = [k for k, c in enumerate(cols) if c != dropped]
    lines = [",".join(line.split(",")[k] for k in keep) for line in REES_LINES]
    path = tmp_path / "events.csv"
    path.write_text("\n".join([",".join(cols[k] for k in keep), *lines]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"events\.csv \(rees46 format\) has no column '{dropped}'"):
        load_dataset(path, fmt="rees46")


def test_adapters_report_a_missing_source_file(tmp_path):
    for fmt in FORMATS:
        with pytest.raises(DataError, match=r"The events file '.*missing_log\.parquet' does not exist\."):
            load_dataset(tmp_path / "missing_log.parquet", fmt=fmt)


def test_online_retail_us_style_csv_dates(tmp_path):
    path = tmp_path / "online_retail.csv"
    path.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850,United Kingdom\n",
        encoding="utf-8",
    )
    ds = load_dataset(path, fmt="online-retail")
    assert ds.events["timestamp"].to_pylist() == [datetime(2010, 12, 1, 8, 26)]
