"""schemathesis checks for the collector, loaded with ``SCHEMATHESIS_HOOKS=<this file>``.

The one server error the collector may answer is 503 ``where: kafka`` (the broker did not
acknowledge in time, so the client retries) or ``where: config`` (still starting); anything
else of 5xx, or a 503 for another reason, fails the run.
"""

from __future__ import annotations

from typing import Any

import schemathesis

RETRYABLE_WHERE = {"kafka", "config"}


@schemathesis.check
def collector_no_server_error_but_retryable_503(ctx: Any, response: Any, case: Any) -> None:
    """No 5xx, except a 503 with ``Retry-After`` saying Kafka or the config is not ready."""
    status = response.status_code
    if status < 500:
        return
    if status == 503 and "Retry-After" in response.headers:
        try:
            where = response.json().get("where")
        except ValueError:
            where = None
        if where in RETRYABLE_WHERE:
            return
    raise AssertionError(f"server error {status}: {response.text[:500]}")
