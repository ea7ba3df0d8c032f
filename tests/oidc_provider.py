"""A real OpenID provider for the single sign-on tests: ``tests/oidc/provider.mjs`` (panva's
``oidc-provider``, installed by ``make setup`` from its lock file) run with Node."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.infra import REPO

SCRIPT = REPO / "tests" / "oidc" / "provider.mjs"
CLIENT_ID = "sextant-workspace"
CLIENT_SECRET = "a test client secret"


@contextlib.contextmanager
def oidc_provider(
    port: int, redirect_uri: str, people: dict[str, dict[str, object]], log: Path
) -> Iterator[str]:
    """Run the provider on ``port`` for the client ``CLIENT_ID``; yields its issuer URL.

    ``people``: email → ``{"name": …, "email_verified": …}``; the provider's sign-in page
    takes any of these emails."""
    if not (SCRIPT.parent / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError("tests/oidc has no node_modules: run `make setup`")
    env = os.environ | {
        "OIDC_PORT": str(port),
        "OIDC_PEOPLE": json.dumps(people),
        "OIDC_CLIENT_ID": CLIENT_ID,
        "OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_REDIRECT_URI": redirect_uri,
    }
    with log.open("wb") as errors:
        process = subprocess.Popen(
            ["node", str(SCRIPT)], stdout=subprocess.PIPE, stderr=errors, env=env
        )
        try:
            yield _ready(process, deadline_s=30)
        finally:
            process.terminate()
            process.wait(timeout=10)


def _ready(process: subprocess.Popen[bytes], deadline_s: float) -> str:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and process.poll() is None:
        if selector.select(timeout=0.5):
            line = process.stdout.readline().decode().strip()
            if line.startswith("ready "):
                return line.removeprefix("ready ")
    raise RuntimeError(f"the OpenID provider did not start (exit code {process.poll()})")
