"""What the worker processes of one collector share: a directory of their metrics and buckets.

``sextant collector`` with several workers prepares it and passes it on in the workers'
environment (``SEXTANT_COLLECTOR_SHARED_DIR``, and ``PROMETHEUS_MULTIPROC_DIR`` for
prometheus_client, which reads it when a process first imports it; the workers are spawned,
so they import afresh).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sextant.collector.settings import CollectorSettings


def metrics_dir(shared: Path) -> Path:
    """prometheus_client's multiprocess files: a scrape of any worker adds them up."""
    return shared / "metrics"


def buckets_file(shared: Path) -> Path:
    """The rate limiter's token buckets (:class:`~sextant.collector.ratelimit.SharedBuckets`)."""
    return shared / "rate-limits"


@contextlib.contextmanager
def prepared_shared_dir(settings: CollectorSettings) -> Iterator[Path]:
    """An empty shared directory (the one set, or a private temporary one), announced to the
    processes started inside the block."""
    with contextlib.ExitStack() as cleanup:
        if settings.collector_shared_dir is None:
            shared = Path(cleanup.enter_context(tempfile.TemporaryDirectory("-collector")))
        else:
            shared = settings.collector_shared_dir
        # What an earlier run left would add up (counts) or carry over (buckets).
        shutil.rmtree(metrics_dir(shared), ignore_errors=True)
        buckets_file(shared).unlink(missing_ok=True)
        metrics_dir(shared).mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir(shared))
        os.environ["SEXTANT_COLLECTOR_SHARED_DIR"] = str(shared)
        yield shared
