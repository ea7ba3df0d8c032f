"""The dashboard page: rendered safely, and its script keeps a metric live across reconnects."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from sextant.gateway.dashboard import render
from sextant.schemas.config import MetricDefinition, MetricKind

NODE = shutil.which("node")


def test_the_page_escapes_what_teams_typed() -> None:
    metric = MetricDefinition(
        id="m1",
        project_id="p",
        metric_kind=MetricKind.COUNT,
        event='<img src=x onerror="alert(1)">',
        name="</h2><script>alert(1)</script>",
    )
    page = render("<Shop & Co>", [metric], "nonce123")
    assert "<script>alert(1)</script>" not in page
    assert "&lt;/h2&gt;&lt;script&gt;" in page
    assert "&lt;Shop &amp; Co&gt;" in page
    assert '<script nonce="nonce123">' in page
    assert 'data-metric="m1"' in page


def test_without_a_key_the_page_asks_for_one() -> None:
    page = render(None, [], "n")
    assert 'id="login"' in page
    assert "data-metric" not in page


HARNESS = r"""
const vm = require("vm");
const fs = require("fs");
const script = fs.readFileSync(process.argv[2], "utf8");
const element = {
  dataset: { metric: "revenue", kind: "sum", breakdown: "0" },
  querySelector: () => ({ textContent: "", setAttribute() {} }),
};
const page = {
  cookie: "sextant_read_key=secret-key",
  getElementById: () => null,
  querySelectorAll: () => [],
};
const context = vm.createContext({
  document: page, location: { reload() {} }, element,
  TextDecoder, TextEncoder, setTimeout, clearTimeout, console,
  Date, Math, Number, JSON, Map, Set, Promise,
  fetch: async () => { throw new Error("offline"); },
});
vm.runInContext(script, context);
vm.runInContext("globalThis.card = new MetricCard(element);", context);
const card = context.card;
const W = '"window_start":"2025-03-01T10:00:00+00:00"';
const chunks = [
  'event: ready\nid: 0:5,1:7\ndata: {"metric":"revenue"}\n\nevent: po',
  `int\nid: 0:6,1:7\ndata: {${W},"version":2,"value":12.5}\n\n`,
  `event: point\nid: 0:7,1:7\ndata: {${W},"version":1,"value":3}\n\n`,
  "event: heartbeat\nid: 0:9,1:8\ndata: {}\n\n",
];
let i = 0;
const encoder = new TextEncoder();
const reader = {
  read: async () => (i < chunks.length
    ? { value: encoder.encode(chunks[i++]), done: false }
    : { value: undefined, done: true }),
};
(async () => {
  await card.read(reader);
  console.log(JSON.stringify({
    value: card.windows.get(Date.parse("2025-03-01T10:00:00+00:00")),
    lastId: card.lastId,
    headers: card.headers(),
  }));
})();
"""


@pytest.mark.skipif(NODE is None, reason="needs node to run the page's script")
def test_the_script_applies_newer_windows_and_resumes_from_the_last_id(tmp_path: Path) -> None:
    page = render("Shop", [], "n")
    script = re.search(r"<script nonce=\"n\">(.*?)</script>", page, re.DOTALL)
    assert script is not None
    # The page starts its cards at load; the harness builds one card by hand instead.
    (tmp_path / "page.js").write_text(script.group(1))
    (tmp_path / "harness.js").write_text(HARNESS)
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(tmp_path / "harness.js"), str(tmp_path / "page.js")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["value"] == 12.5  # version 1 arrived after version 2: ignored
    assert result["lastId"] == "0:9,1:8"  # heartbeats move the resume point too
    assert result["headers"] == {
        "Authorization": "Bearer secret-key",
        "Last-Event-ID": "0:9,1:8",
    }
