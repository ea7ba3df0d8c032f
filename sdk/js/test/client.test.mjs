// The tracking core against a fake browser and a scripted collector.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Sextant, SURVEY_EVENT } from "../dist/index.js";
import { FakeProfile } from "./fake-browser.mjs";

const HOST = "https://collector.example.com";

/** A profile, a page and an initialised client; `options` override the test defaults. */
function start(options = {}, profile = new FakeProfile(), url) {
  const win = profile.open(url);
  const errors = [];
  const client = new Sextant(profile.env(win));
  client.init("wk_test", { host: HOST, trackPages: false, onError: (e) => errors.push(e), ...options });
  return { profile, win, client, errors, collector: profile.collector, clock: profile.clock };
}

test("events are Segment-shaped, with the context of the page", async () => {
  const { client, collector, clock } = start();
  const id = client.track("Order Completed", { revenue: 39.5 });
  await clock.advance(2000);
  assert.equal(collector.batches.length, 1);
  const request = collector.requests[0];
  assert.equal(request.url, `${HOST}/v1/batch`);
  assert.equal(request.init.method, "POST");
  assert.deepEqual(request.init.headers, { "Content-Type": "text/plain" });
  assert.equal(request.init.keepalive, true);
  const body = request.json;
  assert.equal(body.writeKey, "wk_test");
  assert.match(body.sentAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  const [event] = body.batch;
  assert.equal(event.type, "track");
  assert.equal(event.event, "Order Completed");
  assert.deepEqual(event.properties, { revenue: 39.5 });
  assert.equal(event.messageId, id);
  assert.match(event.messageId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(event.timestamp, "2026-01-15T12:00:00.000Z");
  assert.equal(event.anonymousId, client.anonymousId());
  assert.equal(event.userId, undefined);
  assert.deepEqual(event.context.page, {
    path: "/products",
    referrer: "https://search.example/",
    search: "?utm_source=news&utm_campaign=spring",
    title: "Products",
    url: "https://shop.example.com/products?utm_source=news&utm_campaign=spring",
  });
  assert.deepEqual(event.context.campaign, { source: "news", name: "spring" });
  assert.equal(event.context.userAgent, "FakeBrowser/1.0");
  assert.equal(event.context.locale, "en-GB");
  assert.deepEqual(event.context.screen, { width: 1440, height: 900, density: 2 });
  assert.equal(typeof event.context.timezone, "string");
  assert.deepEqual(event.context.library, { name: "@sextant/browser", version: "0.1.0" });
});

test("identify, alias, group and page have their fields", async () => {
  const { client, collector, clock } = start();
  client.identify("user-42", { plan: "pro" });
  client.identify("user-42", { seats: 3 });
  client.alias("user-43");
  client.group(7, { name: "Acme" });
  client.page("Pricing", { variant: "b" });
  client.track("After");
  await client.flush();
  const [i1, i2, alias, group, page, after] = collector.events;
  assert.deepEqual([i1.type, i1.userId, i1.traits], ["identify", "user-42", { plan: "pro" }]);
  assert.deepEqual(i2.traits, { plan: "pro", seats: 3 }, "traits of the same user merge");
  assert.deepEqual([alias.type, alias.userId, alias.previousId], ["alias", "user-43", "user-42"]);
  assert.deepEqual([group.type, group.groupId, group.traits], ["group", "7", { name: "Acme" }]);
  assert.equal(page.type, "page");
  assert.equal(page.name, "Pricing");
  assert.equal(page.properties.variant, "b");
  assert.equal(page.properties.path, "/products");
  assert.equal(after.userId, "user-42");
  await clock.advance(0);
  assert.equal(clock.nextDelay(), Infinity, "nothing left to do");
});

test("a batch goes at flushAt events, a partial one after flushInterval", async () => {
  const { client, collector, clock } = start({ flushAt: 3, flushInterval: 5000 });
  client.track("a");
  client.track("b");
  await clock.advance(0);
  assert.equal(collector.batches.length, 0);
  client.track("c");
  await clock.advance(0);
  assert.equal(collector.batches.length, 1);
  assert.deepEqual(collector.batches[0].batch.map((e) => e.event), ["a", "b", "c"]);
  client.track("d");
  await clock.advance(4999);
  assert.equal(collector.batches.length, 1);
  await clock.advance(1);
  assert.equal(collector.batches.length, 2);
  assert.equal(client.stats().delivered, 4);
  assert.equal(client.stats().pending, 0);
});

test("a batch body stays under the keepalive limit", async () => {
  const { client, collector } = start({ flushAt: 1000, maxBatchBytes: 100000 });
  const big = "x".repeat(10000);
  for (let i = 0; i < 20; i++) client.track("big", { big, i });
  await client.flush();
  assert.ok(collector.batches.length >= 4);
  for (const request of collector.requests) assert.ok(new TextEncoder().encode(request.body).length < 64000);
  assert.deepEqual(collector.events.map((e) => e.properties.i), [...Array(20).keys()]);
});

test("429 and 503 wait exactly Retry-After, with the same messageIds", async () => {
  const { client, collector, clock } = start({ flushAt: 2 });
  collector.answer({ status: 429, headers: { "Retry-After": "7" } }, { status: 503, headers: { "Retry-After": "3" } });
  client.track("a");
  client.track("b");
  await clock.advance(0);
  assert.equal(collector.batches.length, 1);
  await clock.advance(6999);
  assert.equal(collector.batches.length, 1, "not before Retry-After");
  client.track("c"); // a new event does not cut the wait short
  client.track("d");
  await clock.advance(0);
  assert.equal(collector.batches.length, 1);
  await clock.advance(1);
  assert.equal(collector.batches.length, 2);
  await clock.advance(2999);
  assert.equal(collector.batches.length, 2);
  await clock.advance(1);
  assert.equal(collector.batches.length, 4, "the retried batch, then c and d");
  const ids = collector.batches.map((b) => b.batch.map((e) => e.messageId));
  assert.deepEqual(ids[1], ids[0]);
  assert.deepEqual(ids[2], ids[0]);
  assert.deepEqual(collector.batches[3].batch.map((e) => e.event), ["c", "d"]);
  assert.equal(client.stats().retries, 2);
  assert.equal(client.stats().delivered, 4);
});

test("5xx and network failures back off exponentially with jitter, then give up", async () => {
  const { client, collector, clock, errors } = start({ maxAttempts: 4, retryBaseDelay: 1000 });
  collector.answer({ status: 500 }, "network", { status: 502 }, "network");
  clock.randomValue = 0.5;
  client.track("a");
  await clock.advance(2000);
  const times = [];
  for (let i = 0; i < 3; i++) {
    times.push(clock.nextDelay());
    await clock.advance(clock.nextDelay());
  }
  assert.deepEqual(times, [500, 1000, 2000], "half of 1 s, 2 s, 4 s (random() = 0.5)");
  assert.equal(collector.batches.length, 4);
  assert.equal(new Set(collector.events.map((e) => e.messageId)).size, 1);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].reason, "gave_up");
  assert.equal(errors[0].events[0].event, "a");
  assert.equal(client.stats().failed, 1);
  assert.equal(client.stats().pending, 0);
});

test("events the collector rejects are reported, not retried", async () => {
  const { client, collector, errors } = start();
  collector.answer({
    status: 200,
    body: { accepted: 1, rejected: [{ index: 1, messageId: "x", errors: [{ field: "event", message: "too long" }] }] },
  });
  client.track("ok");
  const bad = client.track("bad");
  await client.flush();
  await client.flush();
  assert.equal(collector.batches.length, 1);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].reason, "rejected");
  assert.equal(errors[0].events[0].messageId, bad);
  assert.deepEqual(errors[0].problems[bad], [{ field: "event", message: "too long" }]);
  assert.deepEqual(client.stats(), { ...client.stats(), delivered: 1, rejected: 1, pending: 0 });
});

for (const status of [400, 401, 403, 413]) {
  test(`a ${status} is final for the batch`, async () => {
    const { client, collector, errors, clock } = start();
    collector.answer({ status, body: "no" });
    client.track("a");
    await client.flush();
    await clock.advance(120000);
    assert.equal(collector.batches.length, 1);
    assert.equal(errors.length, 1);
    assert.equal(errors[0].reason, "http_status");
    assert.equal(errors[0].status, status);
    assert.equal(client.stats().pending, 0);
  });
}

test("the queue survives a reload until the collector answered", async () => {
  const profile = new FakeProfile();
  const first = start({}, profile);
  profile.collector.answer("network", "network");
  first.client.track("before reload 1");
  first.client.track("before reload 2");
  await profile.clock.advance(2000); // one failed attempt; the events wait
  assert.equal(profile.collector.batches.length, 1);
  profile.beaconAccepts = false; // the browser refuses the beacon: the events stay stored
  first.win.leave();
  const second = start({}, profile);
  second.client.track("after reload");
  await second.client.flush();
  await profile.clock.advance(5000);
  const names = profile.collector.events.map((e) => e.event);
  const delivered = names.slice(names.length - 3);
  assert.deepEqual(delivered, ["before reload 1", "before reload 2", "after reload"]);
  const ids = profile.collector.events.filter((e) => e.event === "before reload 1").map((e) => e.messageId);
  assert.equal(new Set(ids).size, 1, "the same messageId across the reload");
  assert.deepEqual([...profile.localStorage.map.keys()].filter((k) => /^sextant:[qp]:/.test(k)), []);
});

test("localStorage holds one key per waiting event: a write costs the new events, not the queue", async () => {
  const { client, clock, profile } = start({ flushAt: 1000, flushInterval: 60000 });
  for (let i = 0; i < 100; i++) client.track("e", { i });
  await clock.advance(0);
  const writes = [];
  const setItem = profile.localStorage.setItem.bind(profile.localStorage);
  profile.localStorage.setItem = (key, value) => {
    writes.push(key);
    setItem(key, value);
  };
  client.track("one more");
  await clock.advance(0);
  assert.equal(writes.length, 2, "the new event and the page's entry");
  assert.equal([...profile.localStorage.map.keys()].filter((k) => k.startsWith("sextant:q:")).length, 101);
  await client.flush();
  await clock.advance(0);
  assert.equal([...profile.localStorage.map.keys()].filter((k) => /^sextant:[qp]:/.test(k)).length, 0);
});

test("a page that crashed: its queue is taken over once it is ten minutes old", async () => {
  const profile = new FakeProfile();
  const first = start({}, profile);
  profile.onLine = false;
  first.client.track("lost?");
  await profile.clock.advance(3000); // persisted, never sent (offline); the page then dies
  profile.onLine = true;
  const second = start({}, profile);
  await profile.clock.advance(3000);
  assert.equal(profile.collector.events.length, 0, "a live page's queue is left alone");
  await profile.clock.advance(10 * 60 * 1000);
  const third = start({}, profile);
  await third.client.flush();
  assert.deepEqual(profile.collector.events.map((e) => e.event), ["lost?"]);
  assert.ok(second && third);
});

test("when the queue is full the oldest events are dropped and counted", async () => {
  const { client, collector, errors, profile } = start({ maxQueueSize: 3 });
  profile.onLine = false;
  for (const name of ["1", "2", "3", "4", "5"]) client.track(name);
  assert.equal(client.stats().dropped, 2);
  assert.deepEqual(errors.map((e) => [e.reason, e.events[0].event]), [["queue_full", "1"], ["queue_full", "2"]]);
  profile.onLine = true;
  profile.clock.setTimeout(() => undefined, 0);
  await client.flush();
  assert.deepEqual(collector.events.map((e) => e.event), ["3", "4", "5"]);
});

test("offline, nothing is attempted; `online` sends", async () => {
  const { client, collector, clock, profile, win } = start();
  profile.onLine = false;
  client.track("offline");
  await clock.advance(60000);
  assert.equal(collector.requests.length, 0);
  profile.onLine = true;
  win.dispatchEvent(new Event("online"));
  await clock.advance(0);
  assert.deepEqual(collector.events.map((e) => e.event), ["offline"]);
});

test("pagehide sends what waits with sendBeacon and clears the stored queue", async () => {
  const { client, collector, profile, win } = start();
  client.track("last click");
  client.page();
  win.leave();
  assert.equal(collector.requests.length, 0);
  assert.equal(profile.beacons.length, 1);
  assert.equal(profile.beacons[0].url, `${HOST}/v1/batch`);
  assert.equal(profile.beacons[0].json.writeKey, "wk_test");
  assert.deepEqual(profile.beaconEvents.map((e) => e.type), ["track", "page"]);
  assert.equal(client.stats().beacons, 1);
  assert.deepEqual([...profile.localStorage.map.keys()].filter((k) => k.startsWith("sextant:q:")), []);
});

test("beacons stay within the 64 KB keepalive budget; the rest waits for the next page", async () => {
  const { client, profile, win } = start({ flushAt: 1000 });
  const big = "y".repeat(9000);
  for (let i = 0; i < 12; i++) client.track("big", { big, i });
  win.leave();
  const total = profile.beacons.reduce((n, b) => n + new TextEncoder().encode(b.body).length, 0);
  assert.ok(total < 64000, String(total));
  assert.ok(profile.beacons.length >= 2);
  const sent = profile.beaconEvents.length;
  assert.ok(sent >= 5 && sent < 12, String(sent));
  const next = start({ flushAt: 1000 }, profile);
  await next.client.flush();
  assert.deepEqual(
    profile.collector.events.map((e) => e.properties.i),
    [...Array(12).keys()].slice(sent),
  );
});

test("the anonymous id is kept in a cookie and in localStorage, and read from either", () => {
  const profile = new FakeProfile();
  const first = start({}, profile).client.anonymousId();
  assert.equal(profile.cookies.get("sextant_aid"), first);
  assert.equal(profile.localStorage.getItem("sextant_aid"), first);
  assert.equal(start({}, profile).client.anonymousId(), first);
  profile.cookies.clear();
  assert.equal(start({}, profile).client.anonymousId(), first, "from localStorage");
  assert.equal(profile.cookies.get("sextant_aid"), first, "and written back to the cookie");
  profile.localStorage.clear();
  assert.equal(start({}, profile).client.anonymousId(), first, "from the cookie");
  assert.match(profile.cookieWrites.at(-1), /Path=\/; SameSite=Lax; Max-Age=31536000; Secure$/);
});

test("reset forgets the user and makes a new anonymous id", async () => {
  const { client, collector, profile } = start();
  client.identify("user-1", { plan: "pro" });
  const before = client.anonymousId();
  client.track("as user-1");
  client.reset();
  client.track("after reset");
  await client.flush();
  const [, asUser, after] = collector.events;
  assert.equal(asUser.userId, "user-1");
  assert.equal(after.userId, undefined);
  assert.notEqual(after.anonymousId, before);
  assert.equal(client.userId(), null);
  assert.equal(profile.cookies.get("sextant_aid"), after.anonymousId);
  assert.equal(profile.cookies.has("sextant_uid"), false);
  assert.equal(start({}, profile).client.userId(), null);
});

test("the user id survives a reload", () => {
  const profile = new FakeProfile();
  start({}, profile).client.identify("user-9");
  assert.equal(start({}, profile).client.userId(), "user-9");
});

test("page views: one at init, one per SPA navigation, none for a hash change", async () => {
  const { client, collector, clock, win } = start({ trackPages: true });
  win.navigate("/cart");
  win.document.title = "Cart";
  win.navigate("/cart#summary");
  await clock.advance(0);
  win.history.replaceState({}, "", "/checkout?step=1");
  await clock.advance(0);
  win.back("/cart");
  await clock.advance(0);
  await client.flush();
  const pages = collector.events.filter((e) => e.type === "page");
  assert.deepEqual(pages.map((p) => p.properties.path), ["/products", "/cart", "/checkout", "/cart"]);
  assert.equal(pages[1].properties.title, "Cart");
  assert.equal(pages[1].properties.referrer, "https://shop.example.com/products?utm_source=news&utm_campaign=spring");
  assert.equal(pages[2].context.page.referrer, "https://shop.example.com/cart");
});

test("trackPages: false sends no page view by itself", async () => {
  const { client, collector, clock, win } = start({ trackPages: false });
  win.navigate("/cart");
  await clock.advance(0);
  await client.flush();
  assert.equal(collector.events.length, 0);
});

test("calls before init keep their time and are sent after it", async () => {
  const profile = new FakeProfile();
  const client = new Sextant(profile.env(profile.open()));
  const id = client.track("early");
  await profile.clock.advance(1000);
  client.init("wk_test", { host: HOST, trackPages: false });
  await client.flush();
  const [event] = profile.collector.events;
  assert.equal(event.messageId, id);
  assert.equal(event.timestamp, "2026-01-15T12:00:00.000Z");
});

test("an event over 32 KB is refused at the call", async () => {
  const { client, errors, collector } = start();
  client.track("huge", { blob: "z".repeat(33 * 1024) });
  const cyclic = {};
  cyclic.self = cyclic;
  client.track("cyclic", cyclic);
  await client.flush();
  assert.deepEqual(errors.map((e) => e.reason), ["too_large", "invalid"]);
  assert.equal(collector.requests.length, 0);
});

test("a full localStorage is reported once, and delivery goes on from memory", async () => {
  const profile = new FakeProfile();
  const { client, errors, collector, clock } = start({}, profile);
  profile.localStorage.quota = 10;
  client.track("a");
  await clock.advance(0);
  client.track("b");
  await clock.advance(0);
  assert.deepEqual(errors.map((e) => e.reason), ["storage"]);
  await client.flush();
  assert.deepEqual(collector.events.map((e) => e.event), ["a", "b"]);
});

test("a throwing onError does not break delivery", async () => {
  const { client, collector } = start({
    onError: () => {
      throw new Error("app bug");
    },
  });
  collector.answer({ status: 400 });
  client.track("a");
  await client.flush();
  client.track("b");
  await client.flush();
  assert.deepEqual(collector.events.map((e) => e.event), ["a", "b"]);
});

test("a survey answer is one call: Survey Responded with survey, score and comment", async () => {
  const { client, collector } = start();
  client.surveyResponse("nps", 9, "Fast delivery", { plan: "pro" });
  client.surveyResponse("csat", 2);
  await client.flush();
  const [nps, csat] = collector.events;
  assert.equal(SURVEY_EVENT, "Survey Responded");
  assert.equal(nps.event, "Survey Responded");
  assert.deepEqual(nps.properties, { plan: "pro", survey: "nps", score: 9, comment: "Fast delivery" });
  assert.deepEqual(csat.properties, { survey: "csat", score: 2 });
});
