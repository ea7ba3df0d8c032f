"""A processor asked to stop ends even when Kafka is gone."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from sextant.core.kafka import ensure_topics
from tests.infra import private_kafka
from tests.integration.test_processor_pipeline import ProcessorProcess

STOP_SECONDS = 5


def test_a_processor_stops_within_its_limit_after_kafka_is_gone(tmp_path: Path) -> None:
    with private_kafka(tmp_path) as (broker, settings):
        ensure_topics(settings, partitions=2)
        worker = ProcessorProcess(settings, tmp_path)
        worker.env["SEXTANT_PROCESSOR_STOP_SECONDS"] = str(STOP_SECONDS)
        worker.start().wait_ready()
        assert worker.process is not None
        broker.stop(kill=True)
        asked = time.monotonic()
        worker.process.send_signal(signal.SIGTERM)
        try:
            exit_code = worker.process.wait(timeout=STOP_SECONDS + 15)
        except subprocess.TimeoutExpired:
            worker.stop(kill=True)
            raise AssertionError("the processor did not stop without Kafka") from None
        assert time.monotonic() - asked > STOP_SECONDS  # it did try to stop gracefully
        assert exit_code == 1
        assert "stop not finished; exiting now" in worker.log_path.read_text()
