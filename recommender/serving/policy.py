"""The one serving policy: what a customer is shown, used alike by the nightly job, the API and the evaluation.

Offline part: the personal list the job publishes (and the evaluation scores). Online part: how a request composes
the published list with live events, filters and the bestseller top-up.
"""

from __future__ import annotations
