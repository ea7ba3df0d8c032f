"""Sextant's Python SDK: send product events to a Sextant collector, run experiments.

from sextant.sdk import Client

client = Client("WRITE_KEY", host="https://collector.example.com")
client.track("user-42", "Order Completed", {"revenue": 39.5})
"""

from sextant.schemas.events import FieldError
from sextant.schemas.flags import ExperimentResult, FeatureResult
from sextant.sdk._client import Client, ClientStats
from sextant.sdk._clock import Clock, SystemClock
from sextant.sdk._errors import DeliveryError, EventValidationError, FailureReason
from sextant.sdk._sender import MAX_BATCH_BYTES, MAX_EVENT_BYTES, RetryPolicy
from sextant.sdk._version import __version__

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_EVENT_BYTES",
    "Client",
    "ClientStats",
    "Clock",
    "DeliveryError",
    "EventValidationError",
    "ExperimentResult",
    "FailureReason",
    "FeatureResult",
    "FieldError",
    "RetryPolicy",
    "SystemClock",
    "__version__",
]
