"""Files that cannot be used fail in one sentence and leave the published version serving; damaged rows inside a
readable file are bad rows, reported by row, field and value, and never abort the file."""

from __future__ import annotations

import gzip
import random
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cache.keys import Keys
from cache.publisher import current_version
from recommender.data.dataset import load_dataset
from recommender.data.demo import generate_shop
from recommender.data.loading import BadRow, DataError
from recommender.data.schema import MAX_PRICE, MAX_QUANTITY, MAX_TEXT_LENGTH
from training.cli import app

HEADER = "user_id,item_id,event_type,timestamp,quantity,price"
runner = CliRunner()


def good_lines(n: int = 40) -> list[str]:
    return [f"u{k},i{k % 7},purchase,2026-01-{1 + k % 28:02d} 10:00:00,1,2.5" for k in range(n)]


def write(path: Path, lines: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Unusable files and the phrase their one-sentence error must contain."""
    plain = "\n".join([HEADER, *good_lines()]) + "\n"
    full_gz = gzip.compress(plain.encode())
    files = {
        "header only": ("events.csv", HEADER.encode() + b"\n", "has no data rows (only a header)"),
        "csv named parquet": ("events.parquet", plain.encode(), "is not a Parquet file"),
        "truncated gz": ("events.csv.gz", full_gz[: len(full_gz) // 2], "is not a readable gzip-compressed CSV file"),
        "fake gz": ("events.gz", plain.encode(), "is not a readable gzip-compressed CSV file"),
        "random bytes": ("events.csv", random.Random(13).randbytes(20_000), "is not CSV text"),
        "control characters": ("events.csv", bytes(range(256)) * 64, "is not CSV text"),
    }
    out = {}
    for name, (file_name, content, phrase) in files.items():
        folder = tmp_path / name.replace(" ", "-")
        folder.mkdir()
        (folder / file_name).write_bytes(content)
        out[name] = (folder / file_name, phrase)
    return out


@pytest.mark.parametrize(
    "kind", ["header only", "csv named parquet", "truncated gz", "fake gz", "random bytes", "control characters"]
)
def test_unusable_file_raises_one_sentence_naming_it(tmp_path, kind):
    path, phrase = bad_files(tmp_path)[kind]
    with pytest.raises(DataError) as err:
        load_dataset(path)
    message = str(err.value)
    assert phrase in message and path.name in message
    assert "\n" not in message and message.endswith(".")


def test_random_bytes_after_a_text_first_line_fail_on_their_columns(tmp_path, capfd):
    path = tmp_path / "events.csv"
    path.write_bytes(b"junk;header\n" + random.Random(5).randbytes(20_000))
    with pytest.raises(DataError, match=r"events\.csv has no column 'user_id'"):
        load_dataset(path)
    assert "Traceback" not in capfd.readouterr().err


def test_a_non_utf8_line_with_the_wrong_number_of_fields_is_one_bad_row(tmp_path, capfd):
    lines = [line.encode() for line in good_lines()]
    lines.insert(3, b"u\xff,i1,purchase,2026-01-05 10:00:00,1,2.5,extra")  # data row 4
    lines.insert(10, b"u\xfe9,i1,purchase,2026-01-05 10:00:00,1,2.5")  # data row 11
    path = tmp_path / "events.csv"
    path.write_bytes(b"\n".join([HEADER.encode(), *lines]) + b"\n")
    ds = load_dataset(path, max_bad_share=0.1)
    assert ds.reports[0].sample == [
        BadRow(4, "line", None, "has the wrong number of fields"),
        BadRow(11, "user_id", "u\ufffd9", "is not UTF-8 text"),
    ]
    assert ds.events.num_rows == 40
    assert "Traceback" not in capfd.readouterr().err


@pytest.fixture()
def serving(tmp_path, redis_handle):
    """A published version under a prefix of its own, and the environment that points `reco` at it."""
    env = {"RECO_KEY_PREFIX": f"bf{uuid.uuid4().hex[:8]}", "RECO_DATA_DIR": str(redis_handle.data_dir or "var")}
    if redis_handle.url:
        env["REDIS_URL"] = redis_handle.url
    shop = generate_shop(n_users=80, n_items=30, n_categories=3, days=40, seed=5)
    events, items = shop.write(tmp_path / "shop")
    ok = runner.invoke(
        app, ["train", "--events", str(events), "--items", str(items), "--no-progress", "--no-gate"], env=env
    )
    assert ok.exit_code == 0, ok.output
    keys = Keys(env["RECO_KEY_PREFIX"])
    return env, keys, current_version(redis_handle.client, keys)


def test_reco_train_on_each_unusable_file_exits_2_in_one_sentence_and_keeps_serving(tmp_path, serving, redis_handle):
    env, keys, before = serving
    assert before[0]
    for kind, (path, phrase) in bad_files(tmp_path).items():
        result = runner.invoke(app, ["train", "--events", str(path), "--no-progress", "--no-gate"], env=env)
        assert result.exit_code == 2, (kind, result.output, result.exception)
        assert isinstance(result.exception, SystemExit), kind  # not an exception escaping as a traceback
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and phrase in lines[0], (kind, result.output)
        assert "Nothing was published" in lines[0]
        assert current_version(redis_handle.client, keys) == before, kind


def test_a_non_utf8_row_among_good_rows_is_one_bad_row(tmp_path):
    lines = [line.encode() for line in good_lines()]
    lines.insert(6, b"u\xff\xfe9,i1,purchase,2026-01-05 10:00:00,1,2.5")  # data row 7
    lines.insert(20, b"u20,i1,purchase,2026-01-05 10:00:00,1,caf\xe9")  # data row 21, Latin-1 in the last field
    path = tmp_path / "events.csv"
    path.write_bytes(b"\n".join([HEADER.encode(), *lines]) + b"\n")
    ds = load_dataset(path, max_bad_share=0.1)
    report = ds.reports[0]
    assert (report.rows_read, report.rows_kept, report.rows_bad) == (42, 40, 2)
    assert report.sample == [
        BadRow(7, "user_id", "u\ufffd\ufffd9", "is not UTF-8 text"),
        BadRow(21, "price", "caf\ufffd", "is not UTF-8 text"),
    ]
    assert report.bad_by_reason == {"user_id is not UTF-8 text": 1, "price is not UTF-8 text": 1}
    assert sorted(set(ds.events["user_id"].to_pylist())) == sorted(f"u{k}" for k in range(40))


def test_a_non_utf8_row_in_a_gzipped_online_retail_file_is_a_bad_row(tmp_path):
    header = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
    lines = [
        f"5{k:05d},8512{k % 5}A,THING {k},2,2011-01-0{1 + k % 9} 10:00,1.5,1{k % 9:04d},UK".encode() for k in range(30)
    ]
    lines.insert(3, b"599999,85123A,CR\xc8ME JAR,2,2011-01-02 10:00,1.5,12345,UK")
    path = tmp_path / "retail.csv.gz"
    path.write_bytes(gzip.compress(b"\n".join([header.encode(), *lines]) + b"\n"))
    ds = load_dataset(path, fmt="online-retail", max_bad_share=0.1)
    report = ds.reports[0]
    assert (report.rows_read, report.rows_kept, report.rows_bad) == (31, 30, 1)
    assert report.sample == [BadRow(4, "Description", "CR\ufffdME JAR", "is not UTF-8 text")]


def test_a_ten_megabyte_field_is_a_bad_row_reported_by_its_start(tmp_path):
    lines = good_lines()
    lines.insert(4, f"{'u' * 10_000_000},i1,purchase,2026-01-05 10:00:00,1,2.5")
    lines.insert(9, f"u98,i1,purchase,{'9' * 10_000_000},1,2.5")
    path = write(tmp_path / "events.csv", lines)
    ds = load_dataset(path, max_bad_share=0.1)
    report = ds.reports[0]
    assert (report.rows_read, report.rows_kept, report.rows_bad) == (42, 40, 2)
    assert [(b.row, b.field, b.reason) for b in report.sample] == [
        (5, "user_id", "is longer than 128 characters"),
        (10, "timestamp", "is not a date-time"),
    ]
    assert all(len(b.value) < 300 and "10,000,000 characters" in b.value for b in report.sample)
    assert len(str(report.sample[0])) < 400


def test_long_free_text_in_a_catalogue_is_a_bad_row(tmp_path):
    events = write(tmp_path / "events.csv", good_lines())
    items = write(
        tmp_path / "items.csv",
        [f"i{k},Thing {k},cups" for k in range(6)] + [f"i6,{'x' * (MAX_TEXT_LENGTH + 1)},cups"],
        header="item_id,title,category",
    )
    ds = load_dataset(events, items, max_bad_share=0.2)
    assert [(b.row, b.field) for b in ds.reports[1].sample] == [(7, "title")]


def test_a_byte_order_mark_leaves_ids_exactly_as_written(tmp_path):
    path = tmp_path / "events.csv"
    body = "user_id,item_id,event_type,timestamp\n00123,00042,view,2026-01-01\n00123,0.50,purchase,2026-01-02\n"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    ds = load_dataset(path)
    assert ds.events["user_id"].to_pylist() == ["00123", "00123"]
    assert ds.events["item_id"].to_pylist() == ["00042", "0.50"]
    gz = tmp_path / "events.csv.gz"
    gz.write_bytes(gzip.compress(b"\xef\xbb\xbf" + body.encode()))
    assert load_dataset(gz).events["user_id"].to_pylist() == ["00123", "00123"]


@pytest.mark.parametrize(
    ("quantity", "price", "field", "reason"),
    [
        ("1e308", "2.5", "quantity", f"is larger than {MAX_QUANTITY:,.0f}"),
        ("2", "1e308", "price", f"is larger than {MAX_PRICE:,.0f}"),
        ("inf", "2.5", "quantity", f"is larger than {MAX_QUANTITY:,.0f}"),
        ("2", "nan", "price", "is not a number"),
    ],
)
def test_magnitudes_beyond_the_bound_are_bad_rows(tmp_path, quantity, price, field, reason):
    lines = good_lines()
    lines.insert(2, f"u0,i1,purchase,2026-01-03 10:00:00,{quantity},{price}")
    ds = load_dataset(write(tmp_path / "events.csv", lines))
    assert ds.reports[0].sample == [BadRow(3, field, quantity if field == "quantity" else price, reason)]
    assert max(ds.events["quantity"].to_pylist()) <= MAX_QUANTITY
    assert max(ds.events["price"].to_pylist()) <= MAX_PRICE


def test_catalogue_price_beyond_the_bound_is_a_bad_row(tmp_path):
    events = write(tmp_path / "events.csv", good_lines())
    items = write(tmp_path / "items.csv", ["i0,3.5", "i1,1e308", "i2,4"], header="item_id,price")
    ds = load_dataset(events, items, max_bad_share=0.5)
    assert ds.reports[1].sample == [BadRow(2, "price", "1e308", f"is larger than {MAX_PRICE:,.0f}")]
