"""The key layout. Every key of a published version lives under ``<prefix>:v:<version>:``.

``<prefix>:current`` / ``<prefix>:previous``  version ids serving now / kept for rollback
``<prefix>:versions``                        set of every version written (complete or not)
``<prefix>:job:lock``                        the running job's lock: who holds it (see :mod:`cache.lock`)
``...:manifest``                             JSON: when, from what, sizes, parameters, evaluation
``...:user:<user_id>``                       personal picks          ``...:next:<user_id>``  next purchase
``...:cust:<user_id>``                       instead of both, for customers not active lately: their model row
``...:best:`` / ``...:best:<category>``      bestsellers             ``...:new``             new arrivals
``...:sim:<item_id>``                        similar items           ``...:items``           hash of item metadata
``...:categories``                           JSON list of categories with bestsellers
``...:catalogue``                            JSON list of item ids; personal, next and similar lists are stored
                                             compactly (:mod:`cache.codec`) as positions in it
``...:seg:<user_id>``                        RFM scores and segment   ``...:segments``  segment summary
``...:kpis:<period>``                        KPI rows for week, month, quarter or year
``...:hist:<user_id>``                       a customer's latest purchases and other events (for the dashboard)
``...:istat:<item_id>``                      who buys an item, how many again and how often

Not versioned: ``<prefix>:quality`` (list, newest first: the promotion gate's figures of the latest runs) and
``<prefix>:evaluation`` (the latest figures ``reco evaluate --publish`` recorded).

Merchandising (not versioned, :mod:`cache.merch`): ``<prefix>:merch:rules`` (hash of rules by name),
``<prefix>:merch:items`` (hash of live catalogue updates by item id), ``<prefix>:merch:gen`` (raised on every change).

``<prefix>:experiment:report`` (not versioned): the latest experiment report (JSON) of the nightly job.

Live events (not versioned): ``<prefix>:live:events`` (stream of every ingested event), ``<prefix>:live:archived``
(id of the last stream entry the job has archived), ``<prefix>:live:user:<user_id>`` (a visitor's latest events).

Ids reach a key only after validation against the id pattern (letters, digits, ``._:@+-``); categories, which are
free text, are percent-encoded.
"""

from __future__ import annotations

from urllib.parse import quote


class Keys:
    def __init__(self, prefix: str = "reco") -> None:
        self.prefix = prefix
        self.current = f"{prefix}:current"
        self.previous = f"{prefix}:previous"
        self.versions = f"{prefix}:versions"
        self.live_stream = f"{prefix}:live:events"
        self.live_archived = f"{prefix}:live:archived"
        self.quality_log = f"{prefix}:quality"
        self.evaluation = f"{prefix}:evaluation"
        self.merch_rules = f"{prefix}:merch:rules"
        self.merch_items = f"{prefix}:merch:items"
        self.merch_gen = f"{prefix}:merch:gen"
        self.job_lock = f"{prefix}:job:lock"
        self.experiment_report = f"{prefix}:experiment:report"

    def live_user(self, user_id: str) -> str:
        return f"{self.prefix}:live:user:{user_id}"

    def version_prefix(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:"

    @staticmethod
    def category(name: str | None) -> str:
        return quote(name or "", safe="")

    # Suffixes under a version: used by the publisher (with version_prefix) and by the reader's script.
    MANIFEST = "manifest"
    FACTORS = "factors"  # item factors, raw float32 bytes (rows in FACTOR_ITEMS order)
    FACTOR_ITEMS = "factor_items"
    CATALOGUE = "catalogue"  # JSON list of item ids: compact lists (cache.codec) store positions in it
    ITEMS = "items"
    NEW = "new"
    CATEGORIES = "categories"
    SEGMENTS = "segments"

    @staticmethod
    def user(user_id: str) -> str:
        return f"user:{user_id}"

    @staticmethod
    def next(user_id: str) -> str:
        return f"next:{user_id}"

    @staticmethod
    def customer(user_id: str) -> str:
        """What the API needs to compute a customer's lists on request (:func:`cache.codec.encode_customer`)."""
        return f"cust:{user_id}"

    @staticmethod
    def segment(user_id: str) -> str:
        return f"seg:{user_id}"

    @staticmethod
    def kpis(period: str) -> str:
        return f"kpis:{period}"

    @staticmethod
    def history(user_id: str) -> str:
        return f"hist:{user_id}"

    @staticmethod
    def item_stats(item_id: str) -> str:
        return f"istat:{item_id}"

    @staticmethod
    def similar(item_id: str) -> str:
        return f"sim:{item_id}"

    @classmethod
    def best(cls, category: str | None = None) -> str:
        return f"best:{cls.category(category)}"
