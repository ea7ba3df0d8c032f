"""Real browser clients, unchanged, send from a page on another origin than the collector.

posthog-js and Segment's analytics-next keep their defaults except what pointing them at
Sextant takes (``api_host``; ``cdnURL``) and posthog-js's ``opt_out_useragent_filter``, which
only lets it run in a headless browser; ``@sextant/browser`` (its script-tag bundle) keeps
its own defaults. Each test names its events uniquely and reads the count back through the
gateway: exactly what was sent, once.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page

from sextant.schemas.assignment import assign
from sextant.schemas.config import Experiment, Feature, Variant
from sextant.schemas.features import features_payload
from sextant.schemas.flags import evaluate
from tests.browser.site import static_site
from tests.browser.stack import (
    CLIENT,
    PROJECT,
    WRITE,
    Stack,
    project_documents,
    running_stack,
)
from tests.infra import wait_for

CLIENTS = Path(__file__).parent / "dist"
SEXTANT_BUNDLE = Path(__file__).parents[2] / "sdk" / "js" / "dist" / "sextant-experiments.min.js"
EXPERIMENT = Experiment(
    id="checkout-flow",
    project_id=PROJECT,
    variants=[Variant(id="control", weight=0.5), Variant(id="one-page", weight=0.5)],
    seed="checkout-flow-seed",
)
FEATURES = [
    Feature.model_validate(
        {
            "id": "beta-banner",
            "project_id": PROJECT,
            "default_value": False,
            "environments": {
                "production": {
                    "rules": [{"type": "rollout", "id": "half", "coverage": 0.5, "value": True}]
                }
            },
        }
    ),
    Feature.model_validate(
        {
            "id": "banner-copy",
            "project_id": PROJECT,
            "value_type": "string",
            "default_value": "Hello",
            "environments": {
                "production": {
                    "rules": [
                        {
                            "type": "force",
                            "id": "fr",
                            "condition": {"lang": "fr"},
                            "value": "Salut",
                        },
                        {"type": "rollout", "id": "half", "coverage": 0.5, "value": "Bonjour"},
                    ]
                }
            },
        }
    ),
]


def feature_value(key: str, attributes: dict[str, str]) -> object:
    """What Sextant's evaluator gives: the reference the browser clients must match."""
    payload = features_payload(FEATURES, [], "production", datetime.now(UTC))
    return evaluate(payload["features"], key, attributes).value


PAGE = """<!doctype html><html><head><title>shop</title></head><body>
<script src="posthog.js"></script>
<script src="segment.js"></script>
<script src="sextant.js"></script>
<script>
window.flags = {{}};
window.sextantErrors = [];
sextant.init({key!r}, {{
  host: {collector!r},
  features: {{clientKey: {client!r}}},
  onError: (error) => window.sextantErrors.push(error.reason + ' ' + error.message),
}});
window.failures = [];
posthog.init({key!r}, {{
  api_host: {collector!r},
  opt_out_useragent_filter: true,
  on_request_error: (error) => window.failures.push(String(error.statusCode)),
}});
posthog.onFeatureFlags(() => {{
  window.flags.posthog = posthog.getFeatureFlag({flag!r});
  window.flags.beta = posthog.isFeatureEnabled('beta-banner');
  window.flags.copy = posthog.getFeatureFlag('banner-copy');
}});
window.segment = AnalyticsBrowser.load({{writeKey: {key!r}, cdnURL: {collector!r}}});
window.segment.ready(() => {{ window.segmentReady = true; }});
window.send = (name, n) => {{
  for (let i = 0; i < n; i++) {{
    posthog.capture('ph ' + name, {{i}});
    window.segment.track('seg ' + name, {{i}});
    sextant.track('sx ' + name, {{i}});
  }}
}};
</script></body></html>
"""


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("browser-stack")
    documents = project_documents(EXPERIMENT, *FEATURES)
    with running_stack(kafka_bootstrap, folder, documents) as running:
        yield running


@pytest.fixture(scope="module")
def site_root(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    for bundle in ("posthog.js", "segment.js"):
        shutil.copy(CLIENTS / bundle, root / bundle)
    shutil.copy(SEXTANT_BUNDLE, root / "sextant.js")
    (root / "shop.html").write_text(
        PAGE.format(key=WRITE, collector=stack.collector, flag=EXPERIMENT.id, client=CLIENT)
    )
    return root


@pytest.fixture(scope="module")
def site(site_root: Path) -> Iterator[str]:
    """The shop's pages, on an origin the project allows (``http://127.0.0.1:*``)."""
    with static_site(site_root) as origin:
        yield origin


def open_shop(context: BrowserContext, origin: str) -> Page:
    page = context.new_page()
    page.goto(f"{origin}/shop.html")
    page.wait_for_function("window.segmentReady === true", timeout=20_000)
    return page


def seen(page: Page, urls: list[str], part: str, times: int = 1) -> bool:
    """Whether ``times`` URLs containing ``part`` are in ``urls``, which the page's events
    fill (the sync API delivers them only while it is called, hence the short wait)."""
    page.wait_for_timeout(10)
    return sum(part in url for url in urls) >= times


def test_events_from_both_clients_are_stored_once(
    stack: Stack, site: str, browser_context: BrowserContext
) -> None:
    name = uuid.uuid4().hex[:8]
    page = open_shop(browser_context, site)
    page.evaluate("name => window.send(name, 10)", name)
    stack.wait_count(f"ph {name}", 10)
    stack.wait_count(f"seg {name}", 10)
    stack.wait_count(f"sx {name}", 10)
    assert page.evaluate("window.failures") == []
    assert page.evaluate("window.sextantErrors") == []


def test_events_sent_as_the_page_unloads_arrive(
    stack: Stack, site: str, browser_context: BrowserContext
) -> None:
    name = uuid.uuid4().hex[:8]
    page = open_shop(browser_context, site)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.evaluate("name => window.send(name, 3)", name)
    # analytics-next sends each call at once: leave while its requests are in flight.
    # posthog-js still holds its events in its queue (it sends every few seconds).
    wait_for(lambda: seen(page, requests, "/v1/t", times=3), 10, 0.01, "segment sending")
    page.goto("about:blank")
    stack.wait_count(f"ph {name}", 3)  # posthog-js: sendBeacon as the page hides
    stack.wait_count(f"sx {name}", 3)  # @sextant/browser: likewise
    # analytics-next keeps what was in flight in localStorage and sends it again on the next
    # visit: a redelivery of one that did arrive is the same message, stored once.
    open_shop(browser_context, site)
    stack.wait_count(f"seg {name}", 3)


def test_events_queued_while_the_collector_is_down_arrive_once_it_returns(
    stack: Stack, site: str, browser_context: BrowserContext
) -> None:
    name = uuid.uuid4().hex[:8]
    page = open_shop(browser_context, site)
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    stack.stop_collector()
    try:
        page.evaluate("name => window.send(name, 4)", name)
        wait_for(
            lambda: seen(page, failed, "/e/") and seen(page, failed, "/v1/t"),
            30,
            0.2,
            "both clients failing to reach the collector",
        )
    finally:
        stack.start_collector()
    stack.wait_count(f"ph {name}", 4, timeout_s=120)
    stack.wait_count(f"seg {name}", 4, timeout_s=120)
    stack.wait_count(f"sx {name}", 4, timeout_s=120)


def test_a_page_on_an_origin_the_project_does_not_allow_stores_nothing(
    stack: Stack, site: str, site_root: Path, browser_context: BrowserContext
) -> None:
    port = re.sub(r".*:", "", site)
    foreign = f"http://localhost:{port}"  # the same pages, an origin the project does not list
    name = uuid.uuid4().hex[:8]
    page = browser_context.new_page()
    refused: list[str] = []
    page.on("requestfailed", lambda request: refused.append(request.url))
    page.goto(f"{foreign}/shop.html")
    page.evaluate("name => window.send(name, 3)", name)
    wait_for(lambda: seen(page, refused, "/e/"), 30, 0.2, "posthog-js refused")

    control = uuid.uuid4().hex[:8]
    open_shop(browser_context, site).evaluate("name => window.send(name, 1)", control)
    stack.wait_count(f"ph {control}", 1)
    assert stack.count(f"ph {name}") == 0
    assert stack.count(f"seg {name}") == 0
    assert stack.count(f"sx {name}") == 0
    assert page.evaluate("window.sextantErrors")  # the page is told, never silently
    metrics = httpx.get(f"{stack.collector}/metrics", timeout=10).text
    assert f'sextant_collector_origin_refusals_total{{origin="{foreign}"}}' in metrics


@pytest.mark.parametrize("visitor", ["visitor-1", "visiteur-é-2", "访客-3"])
def test_posthog_get_feature_flag_returns_sextants_variant(
    stack: Stack, site: str, browser_context: BrowserContext, visitor: str
) -> None:
    page = browser_context.new_page()
    page.goto(f"{site}/shop.html")
    page.evaluate("visitor => posthog.identify(visitor)", visitor)
    page.evaluate("() => posthog.reloadFeatureFlags()")
    index = assign(EXPERIMENT.id, visitor, [0.5, 0.5], seed=EXPERIMENT.seed)
    assert index is not None
    expected = EXPERIMENT.variants[index].id
    wait_for(
        lambda: page.evaluate("window.flags.posthog") == expected,
        20,
        0.2,
        f"posthog.getFeatureFlag for {visitor} to be {expected}",
    )


@pytest.mark.parametrize("visitor", ["visitor-1", "visiteur-é-2", "访客-3"])
def test_sextant_browser_assigns_the_variant_every_sdk_assigns(
    stack: Stack, site: str, browser_context: BrowserContext, visitor: str
) -> None:
    page = browser_context.new_page()
    page.goto(f"{site}/shop.html")
    page.evaluate("() => sextant.experimentsReady(10000)")
    index = assign(EXPERIMENT.id, visitor, [0.5, 0.5], seed=EXPERIMENT.seed)
    assert index is not None
    variant = page.evaluate("unit => sextant.getVariant('checkout-flow', unit)", visitor)
    assert variant == EXPERIMENT.variants[index].id


@pytest.mark.parametrize("visitor", ["visitor-1", "visiteur-é-2", "访客-3", "visitor-4", "v-5"])
def test_posthog_reads_sextants_features_through_flags(
    stack: Stack, site: str, browser_context: BrowserContext, visitor: str
) -> None:
    page = browser_context.new_page()
    page.goto(f"{site}/shop.html")
    page.evaluate("visitor => posthog.identify(visitor)", visitor)
    page.evaluate("() => posthog.reloadFeatureFlags()")
    beta = feature_value("beta-banner", {"id": visitor})
    copy = feature_value("banner-copy", {"id": visitor})
    wait_for(
        lambda: page.evaluate("[window.flags.beta, window.flags.copy]") == [beta, copy],
        20,
        0.2,
        f"posthog's isFeatureEnabled and getFeatureFlag for {visitor}: {beta}, {copy}",
    )
    page.evaluate("() => posthog.setPersonPropertiesForFlags({lang: 'fr'})")
    wait_for(
        lambda: page.evaluate("window.flags.copy") == "Salut",
        20,
        0.2,
        "a person property the condition tests",
    )


@pytest.mark.parametrize("visitor", ["visitor-1", "访客-3", "v-5"])
def test_sextant_browser_evaluates_features_in_the_page(
    stack: Stack, site: str, browser_context: BrowserContext, visitor: str
) -> None:
    page = browser_context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{site}/shop.html")
    page.evaluate("() => sextant.featuresReady(10000)")
    assert any(f"/api/features/{CLIENT}" in url for url in requests)
    before = len(requests)
    got = page.evaluate(
        "unit => [sextant.isOn('beta-banner', {id: unit}),"
        " sextant.getFeatureValue('banner-copy', 'none', {id: unit}),"
        " sextant.getFeatureValue('banner-copy', 'none', {id: unit, lang: 'fr'})]",
        visitor,
    )
    assert got == [
        feature_value("beta-banner", {"id": visitor}),
        feature_value("banner-copy", {"id": visitor}),
        "Salut",
    ]
    assert not any("/api/features" in url for url in requests[before:]), "no fetch to evaluate"
