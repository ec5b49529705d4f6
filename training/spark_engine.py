"""The nightly job on Spark (``reco train --engine spark [--spark-master URL]``).

Loading and validating the events, weighting them into confidences, the ALS fit (Spark MLlib ``ALS`` with implicit
preferences) and the personal top-k lists run on Spark: locally (``local[*]``) or on a cluster. The driver then
finishes the version exactly as the default engine does (repeat model, next purchase, similar items from the fitted
item factors, bestsellers, segments, publishing through :mod:`cache`), so both engines publish the same layout and
the API cannot tell them apart. The driver keeps the validated events (Arrow) and the confidence matrix: those are
what the DuckDB parts need, and they are far smaller than the fit's and the lists' work.

pyspark is an optional extra (``pip install '.[spark]'``) imported only in this module; the default install and the
API never need it. Events in the ``generic`` and ``complete-journey`` formats load on Spark with the same rules as
:mod:`recommender.data.loading` (same bad-row reasons, same share check); the catalogue (small) is read on the driver.

Spark's ALS regularises each user and item in proportion to its number of ratings (ALS-WR), implicit does not, so the
same ``regularization`` would be a different model: :func:`spark_reg_param` maps it (docs/SCALING.md gives the
measured comparison on complete-journey).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from recommender.config import AlsParams
from recommender.data.adapters import complete_journey_products
from recommender.data.dataset import Dataset
from recommender.data.errors import DataError
from recommender.data.loading import EVENT_ALIASES, ID_PATTERN, BadRow, LoadReport, complete_catalogue, validate_items
from recommender.data.reading import read_table
from recommender.data.schema import EVENT_REQUIRED, EVENT_SCHEMA, MAX_ID_LENGTH, empty_items
from recommender.models.weighting import Interactions
from recommender.serving.lists import Ranked, ranked_rows

FORMATS = ("generic", "complete-journey")
CJ_COLUMNS = ("household_id", "basket_id", "product_id", "quantity", "sales_value", "transaction_timestamp")
SAMPLE = 10


def missing_pyspark_message() -> str | None:
    """None when pyspark can be imported, else what to install."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "the spark engine needs pyspark: install the optional extra with pip install '.[spark]'"
    return None


class SparkEngine:
    """One Spark session for one run of the job."""

    def __init__(self, master: str = "local[*]") -> None:
        from pyspark.sql import SparkSession

        builder = SparkSession.builder
        if master.startswith("local"):  # the executors are this machine: run them in this very environment
            os.environ["PYSPARK_PYTHON"] = sys.executable
            builder = builder.config("spark.pyspark.python", sys.executable)
        self.spark = (
            builder.master(master)
            .appName("shop-reco nightly job")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.ansi.enabled", "false")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "4" if master.startswith("local") else "200")
            .config("spark.default.parallelism", "4" if master.startswith("local") else "200")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .getOrCreate()
        )
        self.spark.sparkContext.setLogLevel("ERROR")
        if not self.spark.sparkContext.getCheckpointDir():
            # ALS checkpoints every 10 iterations (its lineage otherwise grows until the JVM's stack overflows). On a
            # cluster set spark.checkpoint.dir to shared storage (e.g. HDFS); locally a temporary directory does.
            self._checkpoints = tempfile.TemporaryDirectory(prefix="reco-spark-")
            self.spark.sparkContext.setCheckpointDir(self._checkpoints.name)
        self.blocks = 2 if master.startswith("local") else 10  # ALS blocks: Spark's default of 10 is for clusters
        self.events: Any = None  # the validated events as a Spark DataFrame (after load)
        self.index: tuple[Any, Any] | None = None  # (user_id -> u, item_id -> i) DataFrames (after weight)

    def close(self) -> None:
        self.spark.stop()
        if hasattr(self, "_checkpoints"):
            self._checkpoints.cleanup()

    # ---- loading -----------------------------------------------------------------------------------------------

    def _read(self, path: Path) -> Any:
        if not path.exists():
            raise DataError(f"{path} does not exist.")
        if path.suffix.lower() == ".parquet":
            return self.spark.read.parquet(str(path))
        return self.spark.read.option("header", True).option("mode", "PERMISSIVE").csv(str(path))

    def load(self, events_path: Path, items_path: Path | None, fmt: str, max_bad_share: float) -> Dataset:
        """Validate the events on Spark (kept as ``self.events``) and bring them to the driver as Arrow."""
        if fmt not in FORMATS:
            raise DataError(f"The spark engine reads the formats {', '.join(FORMATS)}, not '{fmt}'.")
        raw = self._read(Path(events_path))
        required = EVENT_REQUIRED if fmt == "generic" else CJ_COLUMNS
        missing = [c for c in required if c not in raw.columns]
        if missing:
            raise DataError(
                f"{Path(events_path).name} has no column '{missing[0]}' (required: {', '.join(required)}; "
                f"found: {', '.join(raw.columns)})."
            )
        rows = raw.rdd.zipWithIndex().map(lambda p: (*p[0], p[1] + 1)).toDF([*raw.columns, "_row"])
        rows.createOrReplaceTempView("raw_events")
        checked = self.spark.sql(_checked_sql(fmt, set(raw.columns))).cache()
        report = self._report(checked, Path(events_path).name)
        good = checked.filter("err IS NULL AND excluded IS NULL").selectExpr(
            "u AS user_id",
            "i AS item_id",
            "e AS event_type",
            "ts AS timestamp",
            "coalesce(q, 1.0) AS quantity",
            "p AS price",
            "CASE WHEN o IS NULL AND e IN ('purchase', 'return') "
            "THEN concat(u, '|', date_format(ts, \"yyyy-MM-dd'T'HH:mm:ss\")) ELSE o END AS order_id",
        )
        self.events = good.cache()
        events = _canonical(self.events.toArrow())
        reports = [report]
        items = empty_items()
        if items_path:
            items, item_report = validate_items(_catalogue_input(Path(items_path), fmt), Path(items_path).name)
            reports.append(item_report)
        for r in reports:
            r.check(max_bad_share)
        checked.unpersist()
        return Dataset(events, complete_catalogue(events, items), reports)

    def _report(self, checked: Any, source: str) -> LoadReport:
        report = LoadReport(source, rows_read=checked.count())
        for row in checked.filter("excluded IS NOT NULL").groupBy("excluded").count().collect():
            report.excluded[row["excluded"]] = int(row["count"])
        bad = checked.filter("err IS NOT NULL AND excluded IS NULL")
        for row in bad.groupBy("err.field", "err.reason").count().orderBy("count", ascending=False).collect():
            report.bad_by_reason[f"{row['field']} {row['reason']}"] = int(row["count"])
        report.rows_bad = sum(report.bad_by_reason.values())
        report.rows_kept = report.rows_read - report.rows_bad - sum(report.excluded.values())
        sample = bad.orderBy("_row").limit(SAMPLE).select("_row", "err.*").collect()
        report.sample = [BadRow(int(r["_row"]), r["field"], r["value"], r["reason"]) for r in sample]
        return report

    # ---- weighting and fit ---------------------------------------------------------------------------------------

    def weight(self, weights: dict[str, float], half_life_days: float, as_of: datetime) -> Interactions:
        """Confidences per (user, item) on Spark, as :func:`recommender.models.weighting.build_interactions`
        computes them (ids in sorted order); the matrix also comes to the driver (the lists need its rows)."""
        from pyspark.sql import functions as F

        active = {k: float(v) for k, v in weights.items() if v > 0}
        if not active:
            raise ValueError("Every event weight is zero: nothing to learn from.")
        w = self.spark.createDataFrame(list(active.items()), "event_type string, weight double")
        as_of_s = (as_of - datetime(1970, 1, 1)).total_seconds()
        age_days = F.greatest(F.lit(as_of_s) - F.unix_micros("timestamp") / 1e6, F.lit(0.0)) / 86400.0
        ev = self.events.filter(F.col("timestamp") <= F.lit(as_of))
        agg = (
            ev.join(F.broadcast(w), "event_type")
            .groupBy("user_id", "item_id")
            .agg(F.sum(F.col("weight") * F.pow(F.lit(0.5), age_days / float(half_life_days))).alias("c"))
        )
        users, items = _dense_index(agg, "user_id", "u"), _dense_index(agg, "item_id", "i")
        self.index = (users, items)
        self.triples = agg.join(users, "user_id").join(items, "item_id").select("u", "i", "c").cache()
        user_ids = users.orderBy("u").toArrow()["user_id"].to_numpy(zero_copy_only=False).astype(object)
        item_ids = items.orderBy("i").toArrow()["item_id"].to_numpy(zero_copy_only=False).astype(object)
        t = self.triples.toArrow()
        matrix = sp.csr_matrix(
            (
                t["c"].to_numpy().astype(np.float32),
                (t["u"].to_numpy().astype(np.int32), t["i"].to_numpy().astype(np.int32)),
            ),
            shape=(len(user_ids), len(item_ids)),
        )
        return Interactions(matrix, user_ids, item_ids, as_of)

    def fit(self, als: AlsParams) -> AlternatingLeastSquares:
        """Spark MLlib ALS (implicit preferences) on the weighted triples; the factors come back to the driver in an
        implicit model object, so the rest of the job (similar items, on-request rows, fold-in) uses them as usual."""
        n_users, n_items = self.triples.agg({"u": "max"}).first()[0] + 1, self.triples.agg({"i": "max"}).first()[0] + 1
        reg = spark_reg_param(als.regularization, self.triples.count(), n_items)
        return self._fit(self.triples, n_users, n_items, als, reg)

    def fit_matrix(
        self, inter: Interactions, als: AlsParams, reg_param: float | None = None
    ) -> AlternatingLeastSquares:
        """The same fit on a matrix built on the driver (the promotion gate's training window, ``reco evaluate``);
        ``reg_param`` replaces Spark's regParam (else :func:`spark_reg_param` of the settings)."""
        coo = inter.matrix.tocoo()
        table = pa.table(
            {"u": coo.row.astype(np.int32), "i": coo.col.astype(np.int32), "c": coo.data.astype(np.float64)}
        )
        triples = self.spark.createDataFrame(table.to_pandas())
        reg = spark_reg_param(als.regularization, inter.matrix.nnz, inter.matrix.shape[1])
        return self._fit(
            triples, inter.matrix.shape[0], inter.matrix.shape[1], als, reg if reg_param is None else reg_param
        )

    def _fit(
        self, triples: Any, n_users: int, n_items: int, als: AlsParams, reg_param: float
    ) -> AlternatingLeastSquares:
        from pyspark.ml.recommendation import ALS

        model = ALS(
            rank=als.factors,
            maxIter=als.iterations,
            regParam=reg_param,
            alpha=als.alpha,
            implicitPrefs=True,
            userCol="u",
            itemCol="i",
            ratingCol="c",
            seed=als.random_state,
            coldStartStrategy="drop",
            numUserBlocks=self.blocks,
            numItemBlocks=self.blocks,
        ).fit(triples)
        holder = _holder(als)
        holder.user_factors = _factors(model.userFactors, n_users, als.factors)
        holder.item_factors = _factors(model.itemFactors, n_items, als.factors)
        self.model = model
        return holder

    # ---- top-k ---------------------------------------------------------------------------------------------------

    def pick_batches(
        self,
        model: AlternatingLeastSquares,
        inter: Interactions,
        n: int,
        exclude: sp.csr_matrix | None,
        hidden: np.ndarray,
        users: np.ndarray | None = None,
    ) -> Iterator[tuple[list[str], list[Ranked]]]:
        """Personal ALS top-n of the matrix rows ``users`` computed on the executors (the item factors broadcast,
        each user's excluded items joined in), like ``lists.personal_pick_batches``."""
        from pyspark.sql import functions as F

        rows = np.arange(len(inter.user_ids)) if users is None else np.asarray(users)
        if not len(rows):
            return
        chosen = self.spark.createDataFrame(pa.table({"u": rows.astype(np.int32)}).to_pandas())
        factors = self.model.userFactors.withColumnRenamed("id", "u").join(chosen, "u")
        if exclude is not None:
            bought = self._bought(inter, exclude)
            factors = factors.join(bought, "u", "left")
        else:
            factors = factors.withColumn("skip", F.lit(None).cast("array<int>"))
        item_factors = self.spark.sparkContext.broadcast(np.ascontiguousarray(model.item_factors, dtype=np.float32))
        hidden_b = self.spark.sparkContext.broadcast(np.asarray(hidden, dtype=np.int64))
        k = min(n, model.item_factors.shape[0])

        def top(batches: Iterator[Any]) -> Iterator[Any]:
            # Runs on the executors; written out here (not a call into this package) so that cloudpickle ships the
            # code itself and executors need only numpy and pandas. Exact top-k: excluded and hidden items scored
            # -inf, -1 where fewer than k items are left.
            import numpy as np
            import pandas as pd

            items, gone = item_factors.value, hidden_b.value
            for frame in batches:
                scores = np.vstack(frame["features"].to_numpy()).astype(np.float32) @ items.T
                if len(gone):
                    scores[:, gone] = -np.inf
                for r, skip in enumerate(frame["skip"].to_numpy()):
                    if skip is not None and len(skip):
                        scores[r, np.asarray(skip, dtype=np.int64)] = -np.inf
                if k < scores.shape[1]:
                    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
                else:
                    part = np.tile(np.arange(k), (len(scores), 1))
                best = np.take_along_axis(scores, part, axis=1)
                order = np.argsort(-best, axis=1, kind="stable")
                ids, best = np.take_along_axis(part, order, axis=1), np.take_along_axis(best, order, axis=1)
                ids = np.where(np.isfinite(best), ids, -1).astype(np.int32)
                yield pd.DataFrame({"u": frame["u"].to_numpy(), "ids": list(ids), "scores": list(best)})

        result = factors.mapInPandas(top, "u int, ids array<int>, scores array<float>")
        table = result.toArrow()
        order = np.argsort(table["u"].to_numpy())
        urows = table["u"].to_numpy()[order]
        ids = np.vstack(table["ids"].to_numpy(zero_copy_only=False)[order]) if len(order) else np.empty((0, k))
        scores = np.vstack(table["scores"].to_numpy(zero_copy_only=False)[order]) if len(order) else np.empty((0, k))
        for start in range(0, len(urows), 10_000):
            part = slice(start, start + 10_000)
            yield inter.user_ids[urows[part]].tolist(), ranked_rows(ids[part], scores[part], inter.item_ids)

    def _bought(self, inter: Interactions, exclude: sp.csr_matrix) -> Any:
        """Each user's excluded items (matrix columns) as a Spark column ``skip``."""
        coo = exclude.tocoo()
        pairs = pa.table({"u": coo.row.astype(np.int32), "i": coo.col.astype(np.int32)})
        from pyspark.sql import functions as F

        return self.spark.createDataFrame(pairs.to_pandas()).groupBy("u").agg(F.collect_list("i").alias("skip"))


def spark_reg_param(regularization: float, ratings: int, items: int) -> float:
    """Spark MLlib's regParam for the settings' (implicit's) ``regularization``: Spark multiplies it by each user's
    and item's number of ratings (ALS-WR), implicit does not, so it is divided here by the mean number of ratings per
    item. Chosen on a validation window of complete-journey among the value as it is, divided by the mean ratings
    per user and per item (bench/spark_quality.py; figures in docs/SCALING.md)."""
    return regularization * items / max(ratings, 1)


def _dense_index(agg: Any, column: str, name: str) -> Any:
    """``column`` -> 0-based position in sorted order (a distributed sort and zipWithIndex, no single partition)."""
    ids = agg.select(column).distinct().orderBy(column)
    return ids.rdd.zipWithIndex().map(lambda p: (p[0][0], p[1])).toDF([column, name])


def _factors(frame: Any, n: int, rank: int) -> np.ndarray:
    table = frame.toArrow()
    out = np.zeros((n, rank), dtype=np.float32)
    if table.num_rows:
        out[table["id"].to_numpy()] = np.vstack(table["features"].to_numpy(zero_copy_only=False))
    return out


def _holder(als: AlsParams) -> AlternatingLeastSquares:
    with threadpool_limits(1, "blas"):
        return AlternatingLeastSquares(
            factors=als.factors, regularization=als.regularization, alpha=als.alpha, iterations=als.iterations
        )


def _canonical(table: pa.Table) -> pa.Table:
    """Spark's Arrow (zoned UTC timestamps, nullable everything) in the canonical EVENT_SCHEMA."""
    ts = table["timestamp"]
    if pa.types.is_timestamp(ts.type) and ts.type.tz:
        ts = pc.cast(ts, pa.timestamp("us", tz=ts.type.tz)).cast(pa.timestamp("us"))
    cols = {name: table[name] for name in EVENT_SCHEMA.names}
    cols["timestamp"] = ts
    return pa.table(cols).cast(EVENT_SCHEMA)


def _catalogue_input(path: Path, fmt: str) -> pa.Table:
    """The catalogue in generic columns (read on the driver: catalogues are small)."""
    return read_table(path, "items") if fmt == "generic" else complete_journey_products(path)


def _text(col: str, present: bool) -> str:
    return f"NULLIF(TRIM(CAST(`{col}` AS STRING)), '')" if present else "CAST(NULL AS STRING)"


def _timestamp(col: str) -> str:
    raw = _text(col, True)
    return (
        f"CASE WHEN {raw} RLIKE '^[0-9]{{9,11}}$' THEN timestamp_seconds(CAST({raw} AS BIGINT)) "
        f"WHEN {raw} RLIKE '^[0-9]{{12,13}}$' THEN timestamp_millis(CAST({raw} AS BIGINT)) "
        f"ELSE try_to_timestamp({raw}) END"
    )


def _checked_sql(fmt: str, has: set[str]) -> str:
    """Spark SQL with the columns u, i, e, ts, q, p, o, the bad-row struct ``err`` and ``excluded``: the rules of
    :func:`recommender.data.loading.validate_events` (and of the complete-journey adapter)."""
    aliases = ", ".join(f"'{k}', '{v}'" for k, v in EVENT_ALIASES.items())
    if fmt == "generic":
        source = f"""
          SELECT _row, {_text("user_id", True)} AS u, {_text("item_id", True)} AS i,
                 {_text("event_type", True)} AS e_raw,
                 {_text("timestamp", True)} AS ts_raw, {_timestamp("timestamp")} AS ts,
                 {_text("quantity", "quantity" in has)} AS q_raw, {_text("price", "price" in has)} AS p_raw,
                 {_text("order_id", "order_id" in has)} AS o, CAST(NULL AS STRING) AS excluded
          FROM raw_events"""
    else:
        source = f"""
          SELECT _row, {_text("household_id", True)} AS u, {_text("product_id", True)} AS i, 'purchase' AS e_raw,
                 {_text("transaction_timestamp", True)} AS ts_raw, {_timestamp("transaction_timestamp")} AS ts,
                 {_text("quantity", True)} AS q_raw,
                 CAST(CASE WHEN try_cast(quantity AS DOUBLE) > 0 AND try_cast(sales_value AS DOUBLE) >= 0
                      THEN try_cast(sales_value AS DOUBLE) / try_cast(quantity AS DOUBLE) END AS STRING) AS p_raw,
                 {_text("basket_id", True)} AS o,
                 CASE WHEN try_cast(quantity AS DOUBLE) = 0 THEN 'zero-quantity line (coupon or adjustment)' END
                   AS excluded
          FROM raw_events"""
    ids = ID_PATTERN.replace("\\", "\\\\")
    chars = "has characters outside A-Z a-z 0-9 . _ : @ + -"
    longer = f"is longer than {MAX_ID_LENGTH} characters"
    rules = [
        ("u IS NULL", "user_id", "is empty", "u"),
        (f"length(u) > {MAX_ID_LENGTH}", "user_id", longer, "u"),
        (f"NOT u RLIKE '{ids}'", "user_id", chars, "u"),
        ("i IS NULL", "item_id", "is empty", "i"),
        (f"length(i) > {MAX_ID_LENGTH}", "item_id", longer, "i"),
        (f"NOT i RLIKE '{ids}'", "item_id", chars, "i"),
        ("e IS NULL", "event_type", "is not one of view, cart, purchase, return, impression, click", "e_raw"),
        ("ts IS NULL", "timestamp", "is not a date-time", "ts_raw"),
        ("q_raw IS NOT NULL AND q IS NULL", "quantity", "is not a number", "q_raw"),
        ("q IS NOT NULL AND (q <= 0 OR isnan(q))", "quantity", "is not positive", "q_raw"),
        ("p_raw IS NOT NULL AND p IS NULL", "price", "is not a number", "p_raw"),
        ("p IS NOT NULL AND (p < 0 OR isnan(p))", "price", "is negative", "p_raw"),
    ]
    cases = "\n".join(
        f"WHEN {cond} THEN named_struct('field', '{f}', 'reason', '{why}', 'value', {value})"
        for cond, f, why, value in rules
    )
    return f"""
    WITH s AS ({source}),
    t AS (SELECT *, map({aliases})[lower(e_raw)] AS e, try_cast(q_raw AS DOUBLE) AS q, try_cast(p_raw AS DOUBLE) AS p
          FROM s)
    SELECT *, CASE {cases} END AS err FROM t"""
