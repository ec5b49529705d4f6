"""The experiment: a stable control group chosen by hashing, and the recommendation id every list answer carries.

Assignment is stateless: ``blake2b(salt:user_id)`` read as a number in [0, 1) puts a customer in the control group
when it falls below the control share, so every worker and every process (API, job, export) gives the same answer
with nothing stored. The control group gets the non-personal baseline (bestsellers) wherever the others get
personal picks, which is what the lift in the experiment report is measured against.

A recommendation id (``rec_id``) is opaque to clients and tells the service which list, version and variant an
item was shown from, and when; the storefront and the e-mail service send it back with impressions, clicks and
purchases (``POST /events``).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from datetime import datetime, timezone

CONTROL, TREATMENT = "control", "treatment"
VARIANTS = (TREATMENT, CONTROL)
_SCALE = float(1 << 64)


def bucket(user_id: str, salt: str) -> float:
    """The customer's position in [0, 1), the same in every process for the same salt."""
    digest = hashlib.blake2b(f"{salt}:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def variant_of(user_id: str, salt: str, control_share: float) -> str:
    """``control`` for the share of customers whose bucket falls below ``control_share``, else ``treatment``."""
    return CONTROL if control_share > 0 and bucket(user_id, salt) < control_share else TREATMENT


@dataclasses.dataclass(frozen=True)
class RecId:
    kind: str
    version: str
    variant: str
    at: datetime


def make_rec_id(kind: str, version: str, variant: str, at: datetime | None = None) -> str:
    """An opaque id for one list answer (URL-safe, about 60 characters)."""
    at = at or datetime.now(timezone.utc)
    ms = int((at if at.tzinfo else at.replace(tzinfo=timezone.utc)).timestamp() * 1000)  # naive times are UTC
    raw = f"1|{kind}|{version}|{variant[0]}|{ms:x}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def parse_rec_id(rec_id: str) -> RecId | None:
    """What a recommendation id says, or None when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(rec_id + "=" * (-len(rec_id) % 4)).decode()
        tag, kind, version, variant, ms = raw.split("|")
        if tag != "1" or variant not in ("t", "c"):
            return None
        at = datetime.fromtimestamp(int(ms, 16) / 1000, tz=timezone.utc).replace(tzinfo=None)
        return RecId(kind, version, CONTROL if variant == "c" else TREATMENT, at)
    except (ValueError, UnicodeDecodeError):
        return None
