"""Reading input files (CSV, gzipped CSV, Parquet) into Arrow, with every failure as one sentence.

A file that cannot be read at all (missing, empty, header only, not what its extension says, a truncated or fake
``.gz``, random bytes) raises :class:`DataError` naming the file and the problem. Inside a readable CSV, a line
that cannot become a row (wrong number of fields, text that is not UTF-8) is skipped and travels with the table as
a *pre-validation bad row* (row, field, value, reason) that the validators report like any other bad row.

CSV columns are read as raw bytes with the header's own names (a UTF-8 byte order mark is dropped from the header
only), so ids stay text exactly as written (``00123`` stays ``00123``) and one non-UTF-8 value costs its row, not
the file. Row numbers count data rows from 1 (the header line is not counted).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import sys
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recommender.data.errors import DataError

ROW = "_row"
"""Column holding each row's 1-based data row number in the file."""
BAD_ROWS_META = b"bad_rows"
"""Schema metadata key: JSON list of [row, field, value, reason] for lines skipped while reading."""
WRONG_FIELDS = ("line", None, "has the wrong number of fields")
NOT_UTF8 = "is not UTF-8 text"
FIRST_BLOCK = 1 << 20
"""pyarrow's CSV block size (1 MiB) to start with; a row must fit in one block."""
LARGEST_BLOCK = 1 << 28
"""Largest block tried (256 MiB): a line longer than this makes the file unreadable."""
HEADER_BYTES = 1 << 16
"""Longest header line read (64 KiB is hundreds of column names)."""
SHOWN = 200
"""Characters of a bad value kept for reports (an overlong id is shown whole, a 10 MB field by its start)."""


def shorten(value: str | None) -> str | None:
    """The value as reports show it: at most ``SHOWN`` characters, marked when cut."""
    if value is None or len(value) <= SHOWN:
        return value
    return f"{value[:SHOWN]}... ({len(value):,} characters)"


def read_table(path: Path | str, what: str = "events") -> pa.Table:
    """Read a CSV (optionally ``.gz``) or Parquet file into Arrow and add the 1-based ``_row`` column.

    Raises DataError with one sentence when the file cannot be used at all; lines skipped while reading are
    kept in the schema metadata (see :func:`bad_rows_of`).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"The {what} file '{path}' does not exist.")
    suffix = path.suffix.lower()
    if suffix in {".parquet", ".pq"}:
        table, skipped = _read_parquet(path, what), []
    elif suffix in {".csv", ".txt", ".gz"}:
        table, skipped = _read_csv(path, what)
    else:
        raise DataError(f"The {what} file '{path}' is neither CSV nor Parquet (by its extension).")
    if table.num_rows == 0 and not skipped:
        raise DataError(f"The {what} file '{path}' has no data rows (only a header).")
    return with_bad_rows(table, skipped)


def with_bad_rows(table: pa.Table, bad: list[list]) -> pa.Table:
    """``table`` carrying ``bad`` ([row, field, value, reason] lists) as its pre-validation bad rows."""
    return table.replace_schema_metadata({BAD_ROWS_META: orjson.dumps(bad)})


def bad_rows_of(table: pa.Table) -> list[list]:
    """The pre-validation bad rows a table carries (empty when none)."""
    raw = (table.schema.metadata or {}).get(BAD_ROWS_META)
    return orjson.loads(raw) if raw else []


def _read_parquet(path: Path, what: str) -> pa.Table:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(max(size - 4, 0))
        tail = fh.read(4)
    if size < 8 or head != b"PAR1" or tail != b"PAR1":
        raise DataError(
            f"The {what} file '{path}' is not a Parquet file (it lacks Parquet's start and end marks); "
            "a CSV file must be named .csv or .csv.gz."
        )
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"The {what} file '{path}' is not a readable Parquet file: {_first_line(exc)}.") from None
    return table.append_column(ROW, pa.array(np.arange(1, table.num_rows + 1, dtype=np.int64)))


def _read_csv(path: Path, what: str) -> tuple[pa.Table, list[list]]:
    """Every column as text; returns the table (with ``_row``) and the bad rows skipped while reading."""
    header = _header(path, what)
    try:
        try:
            table, wrong = _parse_csv(lambda: path, header)
            replaced = False
        except pa.ArrowInvalid as exc:
            if "CSV parse error" not in str(exc):
                raise
            # A line the invalid-row handler cannot be given (pyarrow decodes it as UTF-8 first): wrong number of
            # fields *and* bytes that are not UTF-8. Read again with such bytes replaced (U+FFFD), and take rows
            # holding a replacement character as not UTF-8.
            table, wrong = _parse_csv(lambda: _Utf8Replaced(path), header)
            replaced = True
    except (pa.ArrowException, OSError, EOFError, zlib.error) as exc:
        raise _unreadable(path, what, exc) from None
    # Data row numbers of the kept rows skip those of the malformed lines.
    all_rows = np.arange(1, table.num_rows + len(wrong) + 1, dtype=np.int64)
    rows = np.setdiff1d(all_rows, np.array(wrong, dtype=np.int64), assume_unique=True)
    table = table.append_column(ROW, pa.array(rows))
    table, not_utf8 = _drop_non_utf8(table, replaced)
    return table, sorted([[r, *WRONG_FIELDS] for r in wrong] + not_utf8, key=lambda b: b[0])


def _header(path: Path, what: str) -> list[str]:
    """The column names of a CSV file's first line (byte order mark dropped); DataError if there is none."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            first = fh.readline(HEADER_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        raise _unreadable(path, what, exc) from None
    try:
        line = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        line = "\x00"
    if any(ord(c) < 32 and c not in "\t\r\n" for c in line):
        raise DataError(
            f"The {what} file '{path}' is not CSV text: its first line has control characters or bytes that are "
            "not UTF-8 (is it a binary file?)."
        )
    header = next(csv.reader([line]), None)
    if not header:
        raise DataError(f"The {what} file '{path}' is empty (no header line).")
    return header


def _parse_csv(source: Callable[[], Path | io.RawIOBase], header: list[str]) -> tuple[pa.Table, list[int]]:
    """Parse the CSV ``source()`` opens, growing the block size until the longest line fits in one block; returns
    the table and the data row numbers of the lines with the wrong number of fields."""
    block = FIRST_BLOCK
    while True:
        try:
            table, wrong = _parse_blocks(source(), header, block, use_threads=True)
            if wrong and min(wrong) < 0:  # line numbers are only known to the single-threaded reader
                table, wrong = _parse_blocks(source(), header, block, use_threads=False)
            return table, wrong
        except pa.ArrowInvalid as exc:
            if "straddl" not in str(exc) or block >= LARGEST_BLOCK:  # "straddling": a row longer than a block
                raise
            block *= 16


def _parse_blocks(
    source: Path | io.RawIOBase, header: list[str], block: int, use_threads: bool
) -> tuple[pa.Table, list[int]]:
    """pyarrow's reader with our column names and every column as bytes; lines with the wrong number of fields
    are skipped and their data row numbers (-1 if unknown) returned."""
    wrong: list[int] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        wrong.append(row.number - 1 if row.number is not None else -1)
        return "skip"

    with _quiet(on_invalid):
        table = pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(use_threads=use_threads, block_size=block, column_names=header, skip_rows=1),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.binary() for name in header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    return table, sorted(wrong)


@contextmanager
def _quiet(handler: Callable[..., Any]) -> Iterator[None]:
    """Keep pyarrow's failure to hand a non-UTF-8 line to ``handler`` off stderr (the parse error that follows is
    handled by reading again); anything else still reaches the usual hook."""
    original = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if unraisable.object is not handler:
            original(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = original


class _Utf8Replaced(io.RawIOBase):
    """The file's bytes (decompressed when ``.gz``) with every sequence that is not UTF-8 replaced by U+FFFD."""

    def __init__(self, path: Path) -> None:
        self._raw = gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")  # noqa: SIM115
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = self._raw.read(FIRST_BLOCK)
            self._pending = self._decoder.decode(chunk, final=not chunk).encode()
            if not chunk:
                break
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _drop_non_utf8(table: pa.Table, replaced: bool) -> tuple[pa.Table, list[list]]:
    """Cast the byte columns to text; rows with a value that is not UTF-8 (or, when the reader ``replaced`` such
    bytes, holds U+FFFD) are dropped and returned as bad rows."""
    bad: dict[int, list] = {}
    for name in table.column_names:
        if name == ROW:
            continue
        column = table[name].combine_chunks()
        positions = _invalid_utf8(column, 0)
        if replaced:
            positions = np.flatnonzero(pc.fill_null(pc.match_substring(column, "\ufffd"), False)).tolist()
        for i in positions:
            bad.setdefault(i, [None, name, column[i].as_py().decode("utf-8", "replace"), NOT_UTF8])
    if bad:
        keep = np.ones(table.num_rows, dtype=bool)
        keep[list(bad)] = False
        rows = table[ROW].to_numpy()
        for i, entry in bad.items():
            entry[0] = int(rows[i])
            entry[2] = shorten(entry[2])
        table = table.filter(pa.array(keep))
    columns = [c if n == ROW else pc.cast(c, pa.string()) for n, c in zip(table.column_names, table.columns)]
    return pa.table(columns, names=table.column_names), list(bad.values())


def _invalid_utf8(values: pa.Array, offset: int) -> list[int]:
    """Positions (plus ``offset``) of the values that are not UTF-8: one cast when all are, else halving."""
    try:
        pc.cast(values, pa.string())
        return []
    except pa.ArrowInvalid:
        if len(values) == 1:
            return [offset]
    half = len(values) // 2
    return _invalid_utf8(values.slice(0, half), offset) + _invalid_utf8(values.slice(half), offset + half)


def _unreadable(path: Path, what: str, exc: BaseException) -> DataError:
    kind = "gzip-compressed CSV" if path.suffix.lower() == ".gz" else "CSV"
    return DataError(f"The {what} file '{path}' is not a readable {kind} file: {_first_line(exc)}.")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return shorten(text[0].rstrip(".")) if text else type(exc).__name__
