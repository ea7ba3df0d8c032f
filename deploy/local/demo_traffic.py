"""The demo shop's traffic, for ``make run``: two weeks of history, then live visitors.

A shop with anonymous visitors who land from search, newsletters and ads, sign up, browse,
add to cart and buy; the one-page checkout experiment with a planted lift (its variant
converts about 60 % of checkouts, control about 40 %); a payment outage every twenty minutes
(three minutes in which no order goes through) that fires the ``checkout-drop`` alert and
resolves; NPS answers after sign-up and CSAT answers after orders, with comments. Events go
through the Python SDK (``sextant-sdk``) to the collector, as an application's would.

It also runs the local webhook receiver the demo's alert rule delivers to, and prints each
delivery with whether its signature checks out.

    python deploy/local/demo_traffic.py --collector http://127.0.0.1:8080 ...
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from sextant.sdk import Client

EXPERIMENT = "new-checkout"
OUTAGE_EVERY_S = 20 * 60
OUTAGE_FIRST_AFTER_S = 75
OUTAGE_LENGTH_S = 180
HISTORY_DAYS = 14

LOCALES = (
    ["en-US"] * 5 + ["en-GB"] * 2 + ["de-DE"] * 2 + ["fr-FR", "es-ES", "nl-NL", "pt-BR", "ja-JP"]
)
AGENTS = {
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148": 4,
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/124.0 Mobile": 3,
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148": 1,
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36": 4,
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Safari/605.1.15": 3,
}
SOURCES: list[tuple[str, dict[str, str] | None, int]] = [
    ("https://www.google.com/", None, 8),
    ("", None, 5),
    ("https://news.ycombinator.com/", None, 2),
    ("https://x.com/", None, 1),
    ("", {"source": "newsletter", "medium": "email", "name": "spring-sale"}, 3),
    (
        "https://www.facebook.com/",
        {"source": "facebook", "medium": "cpc", "name": "retargeting"},
        2,
    ),
]
PRODUCTS = ["lamp", "chair", "desk", "rug", "shelf", "mug", "plant", "clock"]
PRICES = {
    "lamp": 49,
    "chair": 129,
    "desk": 349,
    "rug": 89,
    "shelf": 75,
    "mug": 14,
    "plant": 29,
    "clock": 39,
}
PLANS = {"free": 6, "pro": 3, "team": 1}
PROMOTER_COMMENTS = [
    "Fast delivery and the lamp looks great.",
    "Checkout was quick, will buy again.",
    "Love the quality of the chair.",
    "Great support, they answered within minutes.",
    "The new one-page checkout is so much easier.",
]
PASSIVE_COMMENTS = [
    "Good products, a bit pricey.",
    "Delivery took a few days longer than promised.",
    "Fine overall, the search could be better.",
]
DETRACTOR_COMMENTS = [
    "Payment failed twice before it worked.",
    "The desk arrived damaged.",
    "Shipping costs are too high.",
    "Could not find the size I wanted.",
    "Checkout kept asking for my address again.",
]
CSAT_COMMENTS = ["Easy to order.", "Arrived on time.", "Packaging was poor.", "Great value.", ""]


def weighted(rng: random.Random, options: dict[str, int]) -> str:
    return rng.choices(list(options), weights=list(options.values()))[0]


@dataclass
class Shop:
    client: Client
    rng: random.Random
    live_start: float = field(default_factory=time.monotonic)
    customers: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(user id, plan, locale, user agent) of the people who signed up, for return visits."""
    sent: int = 0
    orders: int = 0

    def outage(self) -> bool:
        elapsed = time.monotonic() - self.live_start - OUTAGE_FIRST_AFTER_S
        return elapsed >= 0 and elapsed % OUTAGE_EVERY_S < OUTAGE_LENGTH_S

    def _context(
        self, locale: str, agent: str, referrer: str, path: str, campaign: dict[str, str] | None
    ) -> dict[str, Any]:
        context: dict[str, Any] = {
            "locale": locale,
            "userAgent": agent,
            "page": {"path": path, "referrer": referrer, "url": f"https://shop.example{path}"},
        }
        if campaign:
            context["campaign"] = campaign
        return context

    def visit(self, at: datetime, live: bool, day_index: int = HISTORY_DAYS) -> None:
        """One visit starting at ``at``: pages, perhaps a sign-up, a cart, an order, answers."""
        rng = self.rng
        growth = 0.85 + 0.15 * day_index / HISTORY_DAYS  # the shop got better over two weeks
        returning = self.customers and rng.random() < 0.3
        referrer, campaign, _ = rng.choices(SOURCES, weights=[s[2] for s in SOURCES])[0]
        if returning:
            user, plan, locale, agent = rng.choice(self.customers)
            anonymous: str | None = None
        else:
            user, plan = "", weighted(rng, PLANS)
            locale, agent = rng.choice(LOCALES), weighted(rng, AGENTS)
            anonymous = f"anon-{uuid.uuid4().hex[:12]}"
        t = at
        step = timedelta(seconds=rng.uniform(2, 6) if live else rng.uniform(8, 60))

        def send(kind: str, name: str, props: dict[str, Any], path: str = "/") -> None:
            nonlocal t
            context = self._context(
                locale, agent, referrer if path == "/" else "https://shop.example/", path, campaign
            )
            who = user or None
            if kind == "page":
                self.client.page(
                    who,
                    name,
                    {"path": path, "referrer": context["page"]["referrer"], **props},
                    anonymous_id=anonymous,
                    context=context,
                    timestamp=t,
                )
            else:
                self.client.track(
                    who, name, props, anonymous_id=anonymous, context=context, timestamp=t
                )
            self.sent += 1
            t += step

        send("page", "Home", {}, "/")
        if not user:
            if rng.random() > 0.45 * growth:
                if rng.random() < 0.5:
                    send("page", "Pricing", {}, "/pricing")
                return  # a bounce, or a look at prices
            user = f"user-{uuid.uuid4().hex[:10]}"
            self.client.identify(user, {"plan": plan}, anonymous_id=anonymous, timestamp=t)
            send("track", "Signed Up", {"plan": plan})
            anonymous = None
            self.customers.append((user, plan, locale, agent))
            if rng.random() < 0.3:
                self._nps(user, plan, t, day_index)
        for _ in range(rng.randint(1, 3)):
            product = rng.choice(PRODUCTS)
            send("page", "Product", {"product": product}, f"/products/{product}")
            send("track", "Product Viewed", {"product": product, "plan": plan})
        if rng.random() > 0.55 * growth:
            return
        product = rng.choice(PRODUCTS)
        send("track", "Added to Cart", {"product": product, "plan": plan})
        if rng.random() > 0.7:
            return
        variant = self.client.get_variant(EXPERIMENT, user, {"plan": plan}) if live else None
        send("page", "Checkout", {}, "/checkout")
        send("track", "Checkout Started", {"plan": plan})
        buys = 0.62 if variant == "one-page" else 0.40 * growth
        if (live and self.outage()) or rng.random() > buys:
            return
        currency = "EUR"
        revenue = round(PRICES[product] * rng.uniform(0.9, 1.6), 2)
        self.orders += 1
        send(
            "track",
            "Order Completed",
            {"revenue": revenue, "currency": currency, "product": product, "plan": plan},
        )
        if rng.random() < 0.3:
            score = rng.choices([5, 4, 3, 2, 1], weights=[5, 4, 2, 1, 1])[0]
            self.client.survey_response(
                user, "csat", score, rng.choice(CSAT_COMMENTS), {"plan": plan}, timestamp=t
            )
            self.sent += 1

    def _nps(self, user: str, plan: str, at: datetime, day_index: int) -> None:
        rng = self.rng
        weights = {
            "free": [1, 1, 1, 2, 2, 3, 4, 6, 8, 6, 4],
            "pro": [0, 0, 0, 1, 1, 1, 2, 4, 8, 10, 9],
            "team": [0, 0, 1, 1, 1, 2, 3, 5, 8, 7, 5],
        }[plan]
        score = rng.choices(range(11), weights=weights)[0]
        if rng.random() < 0.35 * day_index / HISTORY_DAYS:  # the shop got better
            score = min(10, score + 2)
        bank = (
            PROMOTER_COMMENTS
            if score >= 9
            else DETRACTOR_COMMENTS
            if score <= 6
            else PASSIVE_COMMENTS
        )
        comment = rng.choice(bank) if rng.random() < 0.7 else None
        self.client.survey_response(
            user, "nps", score, comment, {"plan": plan}, timestamp=at + timedelta(seconds=30)
        )
        self.sent += 1


def has_history(gateway: str, read_key: str) -> bool:
    """Whether the warehouse already holds last week's demo traffic (a run before this one)."""
    now = datetime.now(UTC)
    body = {
        "event": "Signed Up",
        "from": (now - timedelta(days=HISTORY_DAYS)).isoformat(),
        "to": (now - timedelta(days=1)).isoformat(),
        "interval": "day",
    }
    try:
        response = httpx.post(
            f"{gateway}/v1/insights/trends",
            json=body,
            headers={"Authorization": f"Bearer {read_key}"},
            timeout=30,
        )
        return (
            response.status_code == 200 and sum(s["total"] for s in response.json()["series"]) > 0
        )
    except httpx.HTTPError:
        return False


def send_history(shop: Shop, visitors_per_day: int = 500) -> None:
    """Two weeks of visits, a little more each day, fewer at weekends; flushed on return."""
    now = datetime.now(UTC)
    start = (now - timedelta(days=HISTORY_DAYS)).replace(hour=0, minute=0, second=0, microsecond=0)
    for day in range(HISTORY_DAYS):
        visitors = int(
            visitors_per_day
            * (1 + 0.04 * day)
            * (0.8 if (start + timedelta(days=day)).weekday() >= 5 else 1.0)
        )
        for _ in range(visitors):
            at = start + timedelta(days=day, seconds=shop.rng.uniform(6 * 3600, 23 * 3600))
            shop.visit(at, live=False, day_index=day)
    shop.client.flush(60)


class Receiver(BaseHTTPRequestHandler):
    secret = b""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        header = self.headers.get("X-Sextant-Signature", "")
        fields = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
        expected = hmac.new(
            self.secret, fields.get("t", "").encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        valid = hmac.compare_digest(expected, fields.get("v1", ""))
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {}
        got = payload.get("transition", payload)
        print(
            f"webhook received: {got.get('rule_id', '?')} {got.get('from_state', '?')} → "
            f"{got.get('to_state', '?')} (value {got.get('value')}; signature "
            f"{'valid' if valid else 'INVALID'})",
            flush=True,
        )
        self.send_response(204)
        self.end_headers()


def _history(client: Client, seed: int | None) -> None:
    started = time.monotonic()
    history = Shop(client, random.Random(None if seed is None else seed + 1))
    send_history(history)
    client.shutdown(30)
    print(
        f"sent {HISTORY_DAYS} days of history: {history.sent:,} events"
        f" in {time.monotonic() - started:.0f}s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collector", default="http://127.0.0.1:8080")
    parser.add_argument("--gateway", default="http://127.0.0.1:8081")
    parser.add_argument("--write-key", required=True)
    parser.add_argument("--read-key", required=True)
    parser.add_argument("--receiver-port", type=int, default=8099)
    parser.add_argument("--webhook-secret", default="")
    parser.add_argument("--visitors-per-second", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()

    Receiver.secret = args.webhook_secret.encode()
    server = ThreadingHTTPServer(("127.0.0.1", args.receiver_port), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"webhook receiver on http://127.0.0.1:{args.receiver_port}/webhooks/sextant", flush=True)

    def client() -> Client:
        return Client(
            args.write_key,
            host=args.collector,
            flush_at=200,
            flush_interval=0.3,
            max_queue_size=100_000,
            when_full="block",
        )

    if not has_history(args.gateway, args.read_key):
        # Beside the live visitors, so the workspace is live from the first minute.
        threading.Thread(target=_history, args=(client(), args.seed), daemon=True).start()
    shop = Shop(client(), random.Random(args.seed))
    print(
        f"live visitors: {args.visitors_per_second:g} a second; a payment outage "
        f"{OUTAGE_FIRST_AFTER_S}s from now for {OUTAGE_LENGTH_S}s"
        f" (then every {OUTAGE_EVERY_S // 60} min)",
        flush=True,
    )
    interval = 1.0 / args.visitors_per_second
    next_at = time.monotonic()
    was_out = False
    try:
        while True:
            shop.visit(datetime.now(UTC), live=True)
            if shop.outage() != was_out:
                was_out = not was_out
                print(
                    "payment outage: orders fail" if was_out else "payments work again", flush=True
                )
            next_at += shop.rng.expovariate(1 / interval)
            time.sleep(max(0.0, next_at - time.monotonic()))
    except KeyboardInterrupt:
        pass
    finally:
        shop.client.shutdown(5)
        server.shutdown()


if __name__ == "__main__":
    main()
