"""A processor worker with faust's own drain loop: the baseline of ``bench.processor_consumer``.

Run as ``python -m bench.faust_drain_worker``; it is ``sextant processor`` with
``BatchDrainingConsumer``'s loop swapped back for faust's (one ``wait_first`` per record).
"""

from __future__ import annotations

from faust.transport.consumer import Consumer as FaustConsumer

from sextant.processor.__main__ import main as run_processor
from sextant.processor.transport import BatchDrainingConsumer

if __name__ == "__main__":
    BatchDrainingConsumer._drain_messages = FaustConsumer._drain_messages  # type: ignore[method-assign]
    run_processor()
