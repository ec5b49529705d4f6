"""The key layout, the one place that names Redis keys. Every key of a published version lives under
``<prefix>:v:<version>:``.

``{<prefix>}:current`` / ``{<prefix>}:previous``  version ids serving now / kept for rollback
``{<prefix>}:versions``                         set of every version written (complete or not)
``{<prefix>}:retired``                          sorted set: versions pushed out, by when their keys expire
``{<prefix>}:job:lock``                         the running job's lock: who holds it (see :mod:`cache.lock`)
``...:manifest``                                JSON: when, from what, sizes, parameters, evaluation
``...:user:{<user_id>}``                        personal picks          ``...:next:{<user_id>}``  next purchase
``...:cust:{<user_id>}``                        instead of both, for customers not active lately: their model row
``...:seg:{<user_id>}``                         RFM scores and segment  ``...:segments``  segment summary
``...:hist:{<user_id>}``                        a customer's latest purchases and other events (for the dashboard)
``...:best:`` / ``...:best:<category>``         bestsellers             ``...:new``             new arrivals
``...:sim:<item_id>``                           similar items           ``...:items``           hash of item metadata
``...:categories``                              JSON list of categories with bestsellers
``...:catalogue``                               JSON list of item ids; personal, next and similar lists are stored
                                                compactly (:mod:`cache.codec`) as positions in it
``...:kpis:<period>``                           KPI rows for week, month, quarter or year
``...:istat:<item_id>``                         who buys an item, how many again and how often
``...:factors`` / ``...:factor_items``          item factors (raw float32) and their item ids
``...:blend_ranker``                            the learned blend's ranker (LightGBM model string, raw; the
                                                manifest's ``blend`` block holds its checksum)

Not versioned: ``<prefix>:quality`` (list, newest first: the promotion gate's figures of the latest runs) and
``<prefix>:evaluation`` (the latest figures ``reco evaluate --publish`` recorded).

Merchandising (not versioned, :mod:`cache.merch`): ``{<prefix>}:merch:rules`` (hash of rules by name),
``{<prefix>}:merch:items`` (hash of live catalogue updates by item id), ``{<prefix>}:merch:gen`` (raised on every
change; read with the pointer, and announced on the pointer channel).

``<prefix>:experiment:report`` (not versioned): the latest experiment report (JSON) of the nightly job.

Live events (not versioned): ``<prefix>:live:events:{<prefix>:<shard>}`` (LIVE_SHARDS streams of ingested events),
``{<prefix>}:live:archived`` (hash: per shard, id of the last stream entry the job has archived),
``<prefix>:live:user:{<user_id>}`` (a visitor's latest events), ``{<prefix>}:live:active`` (sorted set: visitors with
live events, scored by the time of their latest batch). Channels: ``<prefix>:pointer`` (a version id, sent when
``current`` moves) and ``<prefix>:live`` (the visitors of an ingested batch).

Hash tags (the part in braces) decide the Redis Cluster slot: the pointers, the version set, the live index and the
merchandising state share one slot (the switch and rollback scripts touch them together; an API worker reads the
pointer and the merchandising generation in one call); a customer's keys of every version and their live
events share the customer's slot, so one request reads them in one call; the live streams are spread over
LIVE_SHARDS slots so no node is the hot spot. On a single server the tags are just part of the name.

Ids reach a key only after validation against the id pattern (letters, digits, ``._:@+-``, never braces);
categories, which are free text, are percent-encoded.
"""

from __future__ import annotations

from urllib.parse import quote

# Fixed, not a setting: the API writes to and the job reads from exactly these streams, so they can never disagree.
LIVE_SHARDS = 16


class Keys:
    def __init__(self, prefix: str = "reco") -> None:
        self.prefix = prefix
        tag = "{" + prefix + "}"
        self.current = f"{tag}:current"
        self.previous = f"{tag}:previous"
        self.versions = f"{tag}:versions"
        self.retired = f"{tag}:retired"
        self.job_lock = f"{tag}:job:lock"
        self.live_archived = f"{tag}:live:archived"
        self.live_active = f"{tag}:live:active"
        self.pointer_channel = f"{prefix}:pointer"
        self.live_channel = f"{prefix}:live"
        self.quality_log = f"{prefix}:quality"
        self.evaluation = f"{prefix}:evaluation"
        self.merch_rules = f"{tag}:merch:rules"
        self.merch_items = f"{tag}:merch:items"
        self.merch_gen = f"{tag}:merch:gen"
        self.experiment_report = f"{prefix}:experiment:report"

    def live_stream(self, shard: int) -> str:
        return f"{self.prefix}:live:events:{{{self.prefix}:{shard}}}"

    def live_user(self, user_id: str) -> str:
        return f"{self.prefix}:live:user:{{{user_id}}}"

    def version_prefix(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:"

    def key(self, version: str, suffix: str) -> str:
        """The full name of one key of a version."""
        return f"{self.prefix}:v:{version}:{suffix}"

    @staticmethod
    def category(name: str | None) -> str:
        return quote(name or "", safe="")

    # Suffixes under a version: used by the publisher and the reader (with version_prefix or key).
    MANIFEST = "manifest"
    FACTORS = "factors"  # item factors, raw float32 bytes (rows in FACTOR_ITEMS order)
    FACTOR_ITEMS = "factor_items"
    BLEND_RANKER = "blend_ranker"  # the learned blend's ranker, LightGBM's model string (raw bytes)
    CATALOGUE = "catalogue"  # JSON list of item ids: compact lists (cache.codec) store positions in it
    ITEMS = "items"
    NEW = "new"
    CATEGORIES = "categories"
    SEGMENTS = "segments"

    @staticmethod
    def user(user_id: str) -> str:
        return f"user:{{{user_id}}}"

    @staticmethod
    def next(user_id: str) -> str:
        return f"next:{{{user_id}}}"

    @staticmethod
    def customer(user_id: str) -> str:
        """What the API needs to compute a customer's lists on request (:func:`cache.codec.encode_customer`)."""
        return f"cust:{{{user_id}}}"

    @staticmethod
    def segment(user_id: str) -> str:
        return f"seg:{{{user_id}}}"

    @staticmethod
    def history(user_id: str) -> str:
        return f"hist:{{{user_id}}}"

    @staticmethod
    def item_stats(item_id: str) -> str:
        return f"istat:{item_id}"

    @staticmethod
    def kpis(period: str) -> str:
        return f"kpis:{period}"

    @staticmethod
    def similar(item_id: str) -> str:
        return f"sim:{item_id}"

    @classmethod
    def best(cls, category: str | None = None) -> str:
        return f"best:{cls.category(category)}"

    @staticmethod
    def id_of(suffix_tail: str) -> str:
        """The id in the tail of a per-customer key (``{17850}`` -> ``17850``; an untagged tail is returned as is)."""
        return suffix_tail[1:-1] if suffix_tail.startswith("{") and suffix_tail.endswith("}") else suffix_tail
