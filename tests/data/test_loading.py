"""Reading and validating input files against the data contract (recommender.data.loading, recommender.data.dataset)."""

from __future__ import annotations

import gzip
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recommender.data.dataset import load_dataset
from recommender.data.loading import (
    SAMPLE_SIZE,
    BadRow,
    DataError,
    complete_catalogue,
    validate_events,
    validate_items,
)
from recommender.data.reading import ROW, bad_rows_of, read_table
from recommender.data.schema import EVENT_SCHEMA, ITEM_SCHEMA, MAX_ID_LENGTH

EVENT_HEADER = "user_id,item_id,event_type,timestamp,quantity,price,order_id"
T0 = datetime(2026, 1, 2, 3, 4, 5)
T0_TEXT = "2026-01-02 03:04:05"
ID_CHARS = "has characters outside A-Z a-z 0-9 . _ : @ + -"
NOT_EVENT = "is not one of view, cart, purchase, return, impression, click"
WRONG_FIELDS = "line has the wrong number of fields"


pytestmark = pytest.mark.usefixtures("host_zone")


def write_csv(path: Path, header: str, lines: list[str]) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def load_events(path: Path) -> tuple[pa.Table, object]:
    return validate_events(read_table(path, "events"), path.name)


def event(user, item, kind, ts=T0, quantity=1.0, price=None, order_id=None) -> dict:
    return {
        "user_id": user,
        "item_id": item,
        "event_type": kind,
        "timestamp": ts,
        "quantity": quantity,
        "price": price,
        "order_id": order_id,
    }


# --------------------------------------------------------------------------------------------------------------
# Bad rows: each reason, exact row numbers, fields, values and counts
# --------------------------------------------------------------------------------------------------------------

LONG_ID = "u" * (MAX_ID_LENGTH + 1)

MIXED_LINES = [
    f"u1,i1,view,{T0_TEXT},,,",  # 1 good
    f",i1,view,{T0_TEXT},,,",  # 2 empty user_id
    f"u 2,i1,view,{T0_TEXT},,,",  # 3 id with a space
    f"u3,i2,cart,{T0_TEXT},2,4.5,",  # 4 good
    f"{LONG_ID},i1,view,{T0_TEXT},,,",  # 5 overlong id
    f"u4,i1,wishlist,{T0_TEXT},,,",  # 6 unknown event type
    "u5,i1,view,not a date,,,",  # 7 unparsable timestamp
    "u6,i1,view",  # 8 wrong number of fields
    f"u7,i3,purchase,{T0_TEXT},3,2.25,o-7",  # 9 good, after the malformed line
    f"u8,i1,purchase,{T0_TEXT},-1,,",  # 10 negative quantity
    f"u9,i1,purchase,{T0_TEXT},0,,",  # 11 zero quantity
    f"u10,i1,purchase,{T0_TEXT},two,,",  # 12 non-numeric quantity
    f"u11,i1,purchase,{T0_TEXT},1,-2.5,",  # 13 negative price
    f"u12,i1,purchase,{T0_TEXT},1,abc,",  # 14 non-numeric price
    f"u13,i4,view,{T0_TEXT},,0,",  # 15 good (zero price is allowed)
]

MIXED_BAD = [
    BadRow(2, "user_id", None, "is empty"),
    BadRow(3, "user_id", "u 2", ID_CHARS),
    BadRow(5, "user_id", LONG_ID, f"is longer than {MAX_ID_LENGTH} characters"),
    BadRow(6, "event_type", "wishlist", NOT_EVENT),
    BadRow(7, "timestamp", "not a date", "is not a date-time"),
    BadRow(8, "line", None, "has the wrong number of fields"),
    BadRow(10, "quantity", "-1", "is not positive"),
    BadRow(11, "quantity", "0", "is not positive"),
    BadRow(12, "quantity", "two", "is not a number"),
    BadRow(13, "price", "-2.5", "is negative"),
    BadRow(14, "price", "abc", "is not a number"),
]


def test_mixed_file_keeps_good_rows_with_types_and_values(tmp_path):
    events, report = load_events(write_csv(tmp_path / "events.csv", EVENT_HEADER, MIXED_LINES))

    assert events.schema == EVENT_SCHEMA
    assert events.to_pylist() == [
        event("u1", "i1", "view"),
        event("u3", "i2", "cart", quantity=2.0, price=4.5),
        event("u7", "i3", "purchase", quantity=3.0, price=2.25, order_id="o-7"),
        event("u13", "i4", "view", price=0.0),
    ]
    assert (report.rows_read, report.rows_kept, report.rows_bad) == (15, 4, 11)
    assert report.excluded == {}
    assert report.bad_share == pytest.approx(11 / 15)


def test_mixed_file_counts_every_reason_exactly(tmp_path):
    _, report = load_events(write_csv(tmp_path / "events.csv", EVENT_HEADER, MIXED_LINES))

    assert report.bad_by_reason == {
        "user_id is empty": 1,
        f"user_id {ID_CHARS}": 1,
        f"user_id is longer than {MAX_ID_LENGTH} characters": 1,
        f"event_type {NOT_EVENT}": 1,
        "timestamp is not a date-time": 1,
        "quantity is not positive": 2,
        "quantity is not a number": 1,
        "price is negative": 1,
        "price is not a number": 1,
        WRONG_FIELDS: 1,
    }
    assert sum(report.bad_by_reason.values()) == report.rows_bad


def test_mixed_file_sample_names_row_field_and_raw_value(tmp_path):
    _, report = load_events(write_csv(tmp_path / "events.csv", EVENT_HEADER, MIXED_LINES))

    # The sample holds the first SAMPLE_SIZE bad rows in row order; 11 rows are bad, so the last one is left out.
    assert SAMPLE_SIZE == 10
    assert report.sample == MIXED_BAD[:SAMPLE_SIZE]
    assert str(report.sample[1]) == "row 3: user_id='u 2' has characters outside A-Z a-z 0-9 . _ : @ + -"


@pytest.mark.parametrize(
    "line, bad",
    [
        (f",i1,view,{T0_TEXT},,,", BadRow(3, "user_id", None, "is empty")),
        (f"u1,,view,{T0_TEXT},,,", BadRow(3, "item_id", None, "is empty")),
        (f"u 2,i1,view,{T0_TEXT},,,", BadRow(3, "user_id", "u 2", ID_CHARS)),
        (f"u1,i 1,view,{T0_TEXT},,,", BadRow(3, "item_id", "i 1", ID_CHARS)),
        (
            f"{LONG_ID},i1,view,{T0_TEXT},,,",
            BadRow(3, "user_id", LONG_ID, f"is longer than {MAX_ID_LENGTH} characters"),
        ),
        (
            f"u1,{'i' * 129},view,{T0_TEXT},,,",
            BadRow(3, "item_id", "i" * 129, f"is longer than {MAX_ID_LENGTH} characters"),
        ),
        (f"u1,i1,wishlist,{T0_TEXT},,,", BadRow(3, "event_type", "wishlist", NOT_EVENT)),
        ("u1,i1,view,,,,", BadRow(3, "timestamp", None, "is not a date-time")),
        ("u1,i1,view,2026-13-45 99:00:00,,,", BadRow(3, "timestamp", "2026-13-45 99:00:00", "is not a date-time")),
        (f"u1,i1,view,{T0_TEXT},-1,,", BadRow(3, "quantity", "-1", "is not positive")),
        (f"u1,i1,view,{T0_TEXT},0,,", BadRow(3, "quantity", "0", "is not positive")),
        (f"u1,i1,view,{T0_TEXT},two,,", BadRow(3, "quantity", "two", "is not a number")),
        (f"u1,i1,view,{T0_TEXT},1,-0.01,", BadRow(3, "price", "-0.01", "is negative")),
        (f"u1,i1,view,{T0_TEXT},1,free,", BadRow(3, "price", "free", "is not a number")),
        ("u1,i1,view", BadRow(3, "line", None, "has the wrong number of fields")),
        (f"u1,i1,view,{T0_TEXT},1,2,o,extra", BadRow(3, "line", None, "has the wrong number of fields")),
    ],
)
def test_single_bad_row_among_good_rows(tmp_path, line, bad):
    lines = [
        f"a,i1,view,{T0_TEXT},,,",
        f"b,i1,view,{T0_TEXT},,,",
        line,
        f"c,i1,view,{T0_TEXT},,,",
        f"d,i1,view,{T0_TEXT},,,",
    ]
    events, report = load_events(write_csv(tmp_path / "events.csv", EVENT_HEADER, lines))

    assert events.column("user_id").to_pylist() == ["a", "b", "c", "d"]
    assert report.sample == [bad]
    key = WRONG_FIELDS if bad.field == "line" else f"{bad.field} {bad.reason}"
    assert report.bad_by_reason == {key: 1}
    assert (report.rows_read, report.rows_kept, report.rows_bad) == (5, 4, 1)


def test_rows_after_malformed_lines_keep_their_numbers(tmp_path):
    path = write_csv(
        tmp_path / "events.csv",
        "user_id,item_id,event_type,timestamp",
        [
            f"a,i1,view,{T0_TEXT}",  # 1
            "b,i1,view",  # 2 too few fields
            f"c,i2,view,{T0_TEXT}",  # 3
            f"d,i1,view,{T0_TEXT},extra",  # 4 too many fields
            f",i1,view,{T0_TEXT}",  # 5 empty user
            f"e,i3,view,{T0_TEXT}",  # 6
            "f,i1,view,later",  # 7 bad timestamp
            f"g,i4,view,{T0_TEXT}",  # 8
        ],
    )
    raw = read_table(path)
    assert raw.column(ROW).to_pylist() == [1, 3, 5, 6, 7, 8]
    assert bad_rows_of(raw) == [
        [2, "line", None, "has the wrong number of fields"],
        [4, "line", None, "has the wrong number of fields"],
    ]

    events, report = validate_events(raw, path.name)
    assert events.column("user_id").to_pylist() == ["a", "c", "e", "g"]
    assert report.sample == [
        BadRow(2, "line", None, "has the wrong number of fields"),
        BadRow(4, "line", None, "has the wrong number of fields"),
        BadRow(5, "user_id", None, "is empty"),
        BadRow(7, "timestamp", "later", "is not a date-time"),
    ]
    assert report.bad_by_reason == {WRONG_FIELDS: 2, "user_id is empty": 1, "timestamp is not a date-time": 1}
    assert (report.rows_read, report.rows_kept, report.rows_bad) == (8, 4, 4)


def test_quoted_multiline_field_counts_as_one_row(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,event_type,timestamp,order_id\n"
        f'a,i1,purchase,{T0_TEXT},"note\nover two lines"\n'
        "b,i1,view\n"
        f",i1,view,{T0_TEXT},\n",
        encoding="utf-8",
    )
    events, report = load_events(path)
    assert events.column("order_id").to_pylist() == ["note\nover two lines"]
    assert report.sample == [
        BadRow(2, "line", None, "has the wrong number of fields"),
        BadRow(3, "user_id", None, "is empty"),
    ]


def test_ids_are_trimmed_and_allowed_punctuation_is_kept(tmp_path):
    path = write_csv(
        tmp_path / "events.csv",
        "user_id,item_id,event_type,timestamp",
        [
            f"  alice@shop.example  , SKU-1:blue+L_2 ,view,{T0_TEXT}",
            f"{'u' * MAX_ID_LENGTH},i1,view,{T0_TEXT}",
        ],
    )
    events, report = load_events(path)
    assert events.column("user_id").to_pylist() == ["alice@shop.example", "u" * MAX_ID_LENGTH]
    assert events.column("item_id").to_pylist() == ["SKU-1:blue+L_2", "i1"]
    assert report.rows_bad == 0


# --------------------------------------------------------------------------------------------------------------
# Event types, timestamps, defaults
# --------------------------------------------------------------------------------------------------------------


def test_event_type_aliases_map_to_the_four_types(tmp_path):
    raw_types = [
        "Add_To_Cart",
        "transaction",
        "VIEW",
        "page_view",
        "pageview",
        "detail",
        "addtocart",
        "Order",
        "buy",
        "refund",
        " cart ",
        "Purchase",
        "return",
    ]
    lines = [f"u{k},i1,{t},{T0_TEXT},,,o{k}" for k, t in enumerate(raw_types)]
    events, report = load_events(write_csv(tmp_path / "events.csv", EVENT_HEADER, lines))

    assert report.rows_bad == 0
    assert events.column("event_type").to_pylist() == [
        "cart",
        "purchase",
        "view",
        "view",
        "view",
        "view",
        "cart",
        "purchase",
        "purchase",
        "return",
        "cart",
        "purchase",
        "return",
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-01-02 03:04:05", T0),
        ("2026-01-02T03:04:05", T0),
        ("2026-01-02T03:04:05Z", T0),
        ("2026-01-02T05:04:05+02:00", T0),
        ("2026-01-01T22:04:05-05:00", T0),
        ("2026-01-02 03:04:05.250", T0 + timedelta(milliseconds=250)),
        ("2026-01-02", datetime(2026, 1, 2)),
        ("1767323045", T0),  # epoch seconds of 2026-01-02T03:04:05Z
        ("1767323045000", T0),  # epoch milliseconds
    ],
)
def test_timestamp_forms_parse_to_utc_without_zone(tmp_path, text, expected):
    events, report = load_events(
        write_csv(tmp_path / "events.csv", "user_id,item_id,event_type,timestamp", [f"u1,i1,view,{text}"])
    )

    assert report.rows_bad == 0
    assert events.schema.field("timestamp").type == pa.timestamp("us")
    assert events.column("timestamp").to_pylist() == [expected]


def test_timestamps_do_not_depend_on_the_host_time_zone(tmp_path, host_zone):
    host_zone("America/New_York")
    path = write_csv(
        tmp_path / "events.csv",
        "user_id,item_id,event_type,timestamp",
        [
            f"u1,i1,view,{T0_TEXT}",
            "u2,i1,view,1767323045",
            "u3,i1,view,1767323045000",
            "u4,i1,view,2026-01-02T03:04:05Z",
        ],
    )
    events, _ = load_events(path)
    assert events.column("timestamp").to_pylist() == [T0, T0, T0, T0]


def test_missing_quantity_defaults_to_one_and_purchases_get_an_order_id(tmp_path):
    path = write_csv(
        tmp_path / "events.csv",
        EVENT_HEADER,
        [
            f"u1,i1,purchase,{T0_TEXT},,,",
            "u1,i2,purchase,2026-01-02T03:04:05.999Z,,,",
            f"u2,i1,purchase,{T0_TEXT},2,,basket-9",
            f"u3,i1,view,{T0_TEXT},,,",
            f"u3,i1,cart,{T0_TEXT},,,",
            f"u4,i1,return,{T0_TEXT},1,,",
        ],
    )
    events, report = load_events(path)

    assert report.rows_bad == 0
    assert events.column("quantity").to_pylist() == [1.0, 1.0, 2.0, 1.0, 1.0, 1.0]
    assert events.column("order_id").to_pylist() == [
        "u1|2026-01-02T03:04:05",
        "u1|2026-01-02T03:04:05",
        "basket-9",
        None,
        None,
        "u4|2026-01-02T03:04:05",
    ]


def test_only_required_columns_present(tmp_path):
    path = write_csv(
        tmp_path / "events.csv",
        "timestamp,event_type,item_id,user_id,extra",
        [
            f"{T0_TEXT},purchase,i1,u1,ignored",
            f"{T0_TEXT},view,i2,u1,ignored",
        ],
    )
    events, report = load_events(path)
    assert events.schema == EVENT_SCHEMA
    assert events.to_pylist() == [
        event("u1", "i1", "purchase", order_id="u1|2026-01-02T03:04:05"),
        event("u1", "i2", "view"),
    ]


# --------------------------------------------------------------------------------------------------------------
# Parquet
# --------------------------------------------------------------------------------------------------------------


def test_parquet_text_columns_behave_like_csv(tmp_path):
    rows = [line.split(",") for line in MIXED_LINES if line != "u6,i1,view"]  # Parquet has no malformed lines
    cols = EVENT_HEADER.split(",")
    table = pa.table({c: pa.array([r[k] or None for r in rows], pa.string()) for k, c in enumerate(cols)})
    pq.write_table(table, tmp_path / "events.parquet")
    write_csv(tmp_path / "events.csv", EVENT_HEADER, [",".join(r) for r in rows])

    pq_events, pq_report = load_events(tmp_path / "events.parquet")
    csv_events, csv_report = load_events(tmp_path / "events.csv")

    assert pq_events.equals(csv_events)
    assert pq_events.column("user_id").to_pylist() == ["u1", "u3", "u7", "u13"]
    assert pq_report.bad_by_reason == csv_report.bad_by_reason
    assert pq_report.sample == csv_report.sample
    # Without the malformed line, rows from the 8th on are numbered one lower than in MIXED_BAD.
    assert [(b.row, b.field) for b in pq_report.sample] == [
        (2, "user_id"),
        (3, "user_id"),
        (5, "user_id"),
        (6, "event_type"),
        (7, "timestamp"),
        (9, "quantity"),
        (10, "quantity"),
        (11, "quantity"),
        (12, "price"),
        (13, "price"),
    ]
    assert (pq_report.rows_read, pq_report.rows_kept, pq_report.rows_bad) == (14, 4, 10)


def test_parquet_typed_columns_are_accepted(tmp_path):
    berlin = pa.timestamp("us", tz="Europe/Berlin")
    table = pa.table(
        {
            "user_id": pa.array(["u1", "u2", "u3", "u4"]),
            "item_id": pa.array(["i1", "i2", "i3", "i4"]),
            "event_type": pa.array(["view", "purchase", "cart", "purchase"]),
            "timestamp": pa.array(
                [
                    datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1))),
                    T0.replace(tzinfo=timezone.utc),
                    datetime(2026, 7, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
                    T0.replace(tzinfo=timezone.utc),
                ],
                berlin,
            ),
            "quantity": pa.array([None, 2, 1, -3], pa.int64()),
            "price": pa.array([None, 9.99, 1.5, 1.0], pa.float64()),
        }
    )
    pq.write_table(table, tmp_path / "events.parquet")
    raw = read_table(tmp_path / "events.parquet")
    assert raw.column(ROW).to_pylist() == [1, 2, 3, 4]

    events, report = validate_events(raw, "events.parquet")
    assert events.to_pylist() == [
        event("u1", "i1", "view"),
        event("u2", "i2", "purchase", quantity=2.0, price=9.99, order_id="u2|2026-01-02T03:04:05"),
        event("u3", "i3", "cart", ts=datetime(2026, 7, 1, 12, 0), price=1.5),
    ]
    assert report.sample == [BadRow(4, "quantity", "-3", "is not positive")]


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_parquet_naive_timestamp_columns_are_taken_as_utc(tmp_path, unit):
    table = pa.table(
        {
            "user_id": ["u1"],
            "item_id": ["i1"],
            "event_type": ["view"],
            "timestamp": pa.array([T0], pa.timestamp(unit)),
        }
    )
    pq.write_table(table, tmp_path / "events.parquet")
    events, report = load_events(tmp_path / "events.parquet")
    assert report.rows_bad == 0
    assert events.column("timestamp").to_pylist() == [T0]


# --------------------------------------------------------------------------------------------------------------
# Errors: missing file, missing column, too many bad rows
# --------------------------------------------------------------------------------------------------------------


def test_missing_file_raises_data_error_naming_it(tmp_path):
    with pytest.raises(DataError, match=r"The events file '.*clicks_2026\.csv' does not exist\."):
        read_table(tmp_path / "clicks_2026.csv", "events")
    write_csv(tmp_path / "events.csv", EVENT_HEADER, [f"u1,i1,view,{T0_TEXT},,,"])
    with pytest.raises(DataError, match=r"The items file '.*catalogue_2026\.csv' does not exist\."):
        load_dataset(tmp_path / "events.csv", tmp_path / "catalogue_2026.csv")


def test_unknown_extension_raises_data_error(tmp_path):
    (tmp_path / "events.json").write_text("{}")
    with pytest.raises(DataError, match=r"events\.json' is neither CSV nor Parquet"):
        read_table(tmp_path / "events.json")


def test_empty_file_raises_data_error(tmp_path):
    (tmp_path / "events.csv").write_text("")
    with pytest.raises(DataError, match=r"events\.csv' is empty"):
        read_table(tmp_path / "events.csv")


@pytest.mark.parametrize("dropped", ["user_id", "item_id", "event_type", "timestamp"])
def test_missing_required_event_column_names_it(tmp_path, dropped):
    cols = ["user_id", "item_id", "event_type", "timestamp"]
    values = {"user_id": "u1", "item_id": "i1", "event_type": "view", "timestamp": T0_TEXT}
    kept = [c for c in cols if c != dropped]
    path = write_csv(tmp_path / "events.csv", ",".join(kept), [",".join(values[c] for c in kept)])
    with pytest.raises(DataError, match=rf"events\.csv has no column '{dropped}'"):
        load_dataset(path)


def test_missing_item_id_column_names_it(tmp_path):
    write_csv(tmp_path / "events.csv", EVENT_HEADER, [f"u1,i1,view,{T0_TEXT},,,"])
    write_csv(tmp_path / "items.csv", "sku,title", ["i1,Thing"])
    with pytest.raises(DataError, match=r"items\.csv has no column 'item_id' \(required: item_id; found: sku, title\)"):
        load_dataset(tmp_path / "events.csv", tmp_path / "items.csv")


def _ten_rows_two_bad(tmp_path: Path) -> Path:
    lines = [f"u{k},i{k % 3},view,{T0_TEXT},,," for k in range(8)]
    lines.insert(3, f"u 8,i1,view,{T0_TEXT},,,")
    lines.insert(6, "u9,i1,view,someday,,,")
    return write_csv(tmp_path / "events.csv", EVENT_HEADER, lines)


def test_load_dataset_rejects_too_many_bad_rows(tmp_path):
    path = _ten_rows_two_bad(tmp_path)
    with pytest.raises(DataError) as err:
        load_dataset(path)
    message = str(err.value)
    assert message.startswith("events.csv: 2 of 10 rows are bad (20.0%, more than the allowed 5.0%)")
    assert "row 4: user_id='u 8'" in message
    assert "row 7: timestamp='someday' is not a date-time" in message

    with pytest.raises(DataError, match=r"20\.0%, more than the allowed 19\.0%"):
        load_dataset(path, max_bad_share=0.19)


@pytest.mark.parametrize("share", [0.2, 0.5])
def test_load_dataset_with_higher_allowed_share_keeps_the_good_rows(tmp_path, share):
    ds = load_dataset(_ten_rows_two_bad(tmp_path), max_bad_share=share)
    assert ds.events.column("user_id").to_pylist() == [f"u{k}" for k in range(8)]
    (report,) = ds.reports
    assert (report.rows_read, report.rows_kept, report.rows_bad, report.bad_share) == (10, 8, 2, 0.2)
    # The catalogue is completed from the events: i0, i1, i2 first seen at T0.
    assert ds.items.to_pylist() == [
        {"item_id": f"i{k}", "title": None, "category": None, "price": None, "available": True, "created_at": T0}
        for k in range(3)
    ]


# --------------------------------------------------------------------------------------------------------------
# Catalogue
# --------------------------------------------------------------------------------------------------------------

ITEM_HEADER = "item_id,title,category,price,available,created_at"


def item(item_id, title=None, category=None, price=None, available=True, created_at=None) -> dict:
    return {
        "item_id": item_id,
        "title": title,
        "category": category,
        "price": price,
        "available": available,
        "created_at": created_at,
    }


def test_validate_items_duplicates_prices_and_flags(tmp_path):
    path = write_csv(
        tmp_path / "items.csv",
        ITEM_HEADER,
        [
            "A,Alpha,mugs,10.5,true,2025-03-01 10:00:00",  # 1
            "B,Beta,,,,",  # 2 defaults
            "A,Alpha again,cups,11,false,",  # 3 duplicate of A
            "C,Gamma,mugs,-1,true,",  # 4 negative price
            "D,Delta,mugs,abc,true,",  # 5 non-numeric price
            "E,Epsilon,mugs,1,maybe,",  # 6 bad available flag
            "F,Phi,mugs,0,FALSE,",  # 7
            "G,Gee,mugs,2,0,2025-03-02T00:00:00Z",  # 8
            "H,Eta,mugs,3,true,someday",  # 9 bad created_at
            "A,Alpha third,,,,",  # 10 duplicate of A
            "I,Iota,mugs,4,yes,",  # 11
        ],
    )
    items, report = validate_items(read_table(path, "items"), path.name)

    assert items.schema == ITEM_SCHEMA
    assert items.to_pylist() == [
        item("A", "Alpha", "mugs", 10.5, True, datetime(2025, 3, 1, 10)),
        item("B", "Beta"),
        item("F", "Phi", "mugs", 0.0, False),
        item("G", "Gee", "mugs", 2.0, False, datetime(2025, 3, 2)),
        item("I", "Iota", "mugs", 4.0, True),
    ]
    assert report.sample == [
        BadRow(3, "item_id", "A", "appears again (the first valid row is kept)"),
        BadRow(4, "price", "-1", "is negative"),
        BadRow(5, "price", "abc", "is not a number"),
        BadRow(6, "available", "maybe", "is not true/false"),
        BadRow(9, "created_at", "someday", "is not a date-time"),
        BadRow(10, "item_id", "A", "appears again (the first valid row is kept)"),
    ]
    assert report.bad_by_reason == {
        "item_id appears again (the first valid row is kept)": 2,
        "price is negative": 1,
        "price is not a number": 1,
        "available is not true/false": 1,
        "created_at is not a date-time": 1,
    }
    assert (report.rows_read, report.rows_kept, report.rows_bad) == (11, 5, 6)


def test_validate_items_with_only_item_id_defaults_available(tmp_path):
    path = write_csv(tmp_path / "items.csv", "item_id", ["x1", " x2 ", "bad id", '""'])
    items, report = validate_items(read_table(path, "items"), path.name)
    assert items.to_pylist() == [item("x1"), item("x2")]
    assert report.sample == [BadRow(3, "item_id", "bad id", ID_CHARS), BadRow(4, "item_id", None, "is empty")]


def test_complete_catalogue_adds_event_items_and_keeps_catalogue_only_items():
    t1, t2, t3, t4 = (datetime(2026, 1, d) for d in (1, 2, 3, 4))
    events = pa.Table.from_pylist(
        [
            # Out of time order on purpose: "last seen" is by timestamp, not by row.
            event("u1", "new", "purchase", ts=t3, price=3.0),
            event("u1", "new", "view", ts=t4),  # no price: does not erase the last price
            event("u2", "new", "purchase", ts=t2, price=2.0),
            event("u2", "both", "purchase", ts=t1, price=7.0),
            event("u3", "both", "view", ts=t2),
            event("u3", "noprice", "view", ts=t2),
        ],
        schema=EVENT_SCHEMA,
    )
    items = pa.Table.from_pylist(
        [
            item("both", "Both", "mugs", 9.0, False, datetime(2025, 12, 1)),
            item("catalogue-only", "Lonely", "cups", 5.0, True, None),
            item("no-created", "Undated", "cups", None, True, None),
        ],
        schema=ITEM_SCHEMA,
    )

    out = complete_catalogue(events, items)

    assert out.schema == ITEM_SCHEMA
    assert out.to_pylist() == [
        item("both", "Both", "mugs", 9.0, False, datetime(2025, 12, 1)),  # the catalogue's own values win
        item("catalogue-only", "Lonely", "cups", 5.0, True, None),
        item("new", None, None, 3.0, True, t2),  # created_at = first seen, price = last seen price
        item("no-created", "Undated", "cups", None, True, None),
        item("noprice", None, None, None, True, t2),
    ]


def test_complete_catalogue_fills_missing_catalogue_values_from_events():
    events = pa.Table.from_pylist(
        [
            event("u1", "a", "purchase", ts=datetime(2026, 2, 1), price=4.0),
            event("u1", "a", "purchase", ts=datetime(2026, 2, 5), price=4.5),
        ],
        schema=EVENT_SCHEMA,
    )
    items = pa.Table.from_pylist([item("a", "Apple", "fruit", None, True, None)], schema=ITEM_SCHEMA)
    assert complete_catalogue(events, items).to_pylist() == [
        item("a", "Apple", "fruit", 4.5, True, datetime(2026, 2, 1)),
    ]


def test_load_dataset_with_items_file(tmp_path):
    write_csv(
        tmp_path / "events.csv",
        EVENT_HEADER,
        [
            f"u1,A,purchase,{T0_TEXT},1,12.0,o1",
            "u1,Z,view,2026-01-03 00:00:00,,8.0,",
        ],
    )
    write_csv(tmp_path / "items.csv", ITEM_HEADER, ["A,Alpha,mugs,10.5,false,", "K,Kappa,cups,3,,2025-01-01"])
    ds = load_dataset(tmp_path / "events.csv", tmp_path / "items.csv")
    assert [r.source for r in ds.reports] == ["events.csv", "items.csv"]
    assert ds.items.to_pylist() == [
        item("A", "Alpha", "mugs", 10.5, False, T0),
        item("K", "Kappa", "cups", 3.0, True, datetime(2025, 1, 1)),
        item("Z", None, None, 8.0, True, datetime(2026, 1, 3)),
    ]


def test_gzipped_csv_keeps_ids_as_text(tmp_path):
    path = tmp_path / "events.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(f"user_id,item_id,event_type,timestamp\n007,0042,view,{T0_TEXT}\n")
    events, report = load_events(path)
    assert report.rows_bad == 0
    assert events.to_pylist() == [event("007", "0042", "view")]


def test_large_input_keeps_its_order_and_first_bad_rows(tmp_path: Path) -> None:
    """Events are validated without a sort by row number: a log of many row groups, read by several DuckDB threads,
    still comes back in input order, and the bad-row sample holds the first bad rows."""
    n = 400_000
    users = [f"u{i % 997}" for i in range(n)]
    kinds = ["bogus" if i % 50_000 == 7 else "view" for i in range(n)]
    stamps = [T0 + timedelta(seconds=i) for i in range(n)]
    path = tmp_path / "events.parquet"
    pq.write_table(
        pa.table({"user_id": users, "item_id": [f"i{i}" for i in range(n)], "event_type": kinds, "timestamp": stamps}),
        path,
        row_group_size=20_000,
    )
    events, report = validate_events(read_table(path, "events"), path.name)
    good = [i for i in range(n) if i % 50_000 != 7]
    assert events["item_id"].to_pylist() == [f"i{i}" for i in good]
    assert report.rows_bad == n // 50_000
    assert [b.value for b in report.sample] == ["bogus"] * min(SAMPLE_SIZE, n // 50_000)
    assert [b.row for b in report.sample] == sorted(b.row for b in report.sample)
