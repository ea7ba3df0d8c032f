"""Web analytics from page views: what the browser SDK's context already carries.

Page views are ``$page`` events (``@sextant/browser``'s ``page()``, posthog-js's
``$pageview``, Segment's ``page``), with ``properties.path``, ``properties.referrer`` and
``context.campaign`` (UTM), ``context.userAgent`` and ``context.locale``.

* **Sessions**: a visitor's page views with no gap over 30 minutes (Plausible's and
  Google Analytics' rule); a session's entry page is its first, its exit page its last, its
  referrer and campaign those of its first view.
* **Bounce rate**: sessions of one page view over all sessions.
* **Devices**: from the user agent (tablet, mobile, desktop).
* **Countries**: ``context.location.country`` when a client sends it, else the region of
  ``context.locale`` (``fr-FR`` → ``FR``); Sextant looks up no IP address.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sextant.gateway.context import Gateway
from sextant.gateway.series import Interval, bucket_starts
from sextant.gateway.sql import DATETIME, FINAL_PER_PARTITION, Params, run_query, utc

SESSION_GAP_SECONDS = 1800
PAGE_EVENT = "$page"
TOP = 10
DIMENSIONS = ("entry", "exit", "referrer", "campaign", "source", "device", "country")

_PAGE_FIELDS = """
    distinct_id AS user, timestamp AS t,
    toString(getSubcolumn(properties, 'path')) AS path,
    toString(getSubcolumn(properties, 'referrer')) AS ref,
    toString(getSubcolumn(context, 'campaign.name')) AS campaign,
    toString(getSubcolumn(context, 'campaign.source')) AS source,
    multiIf(
        match(toString(getSubcolumn(context, 'userAgent')), '(?i)ipad|tablet'), 'Tablet',
        match(toString(getSubcolumn(context, 'userAgent')), '(?i)mobi|android|iphone'), 'Mobile',
        toString(getSubcolumn(context, 'userAgent')) = '', 'Unknown',
        'Desktop') AS device,
    if(toString(getSubcolumn(context, 'location.country')) != '',
       upper(toString(getSubcolumn(context, 'location.country'))),
       upper(extract(toString(getSubcolumn(context, 'locale')), '[-_]([A-Za-z]{2})$'))) AS country
"""


class WebTotals(BaseModel):
    visitors: int
    sessions: int
    pageviews: int
    bounce_rate: float | None
    views_per_session: float | None
    mean_session_seconds: float | None


class WebRow(BaseModel):
    value: str
    visitors: int
    sessions: int = 0
    pageviews: int = 0
    bounce_rate: float | None = None


class WebPoint(BaseModel):
    t: datetime
    visitors: int
    pageviews: int


class WebResult(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from")
    to: datetime
    interval: Interval
    totals: WebTotals
    series: list[WebPoint]
    pages: list[WebRow]
    breakdowns: dict[str, list[WebRow]] = Field(
        description="entry, exit, referrer, campaign, source, device and country: top values"
    )
    method: str = (
        "sessions end after 30 minutes without a page view; bounce: one page view in a session"
    )


def _scope(params: Params, project_id: str, start: datetime, end: datetime) -> str:
    return (
        f"project_id = {params.add(project_id, 'String')}"
        f" AND event = {params.add(PAGE_EVENT, 'String')}"
        f" AND timestamp >= {params.add(start, DATETIME)}"
        f" AND timestamp < {params.add(end, DATETIME)}"
    )


_SESSIONS = f"""
    SELECT user, s, min(e.1) AS started, max(e.1) AS ended, count() AS views,
           argMin(e.2, e.1) AS entry, argMax(e.2, e.1) AS exit,
           argMin(e.3, e.1) AS ref, argMin(e.4, e.1) AS campaign, argMin(e.5, e.1) AS source,
           argMin(e.6, e.1) AS device, argMin(e.7, e.1) AS country
    FROM (
        SELECT user, evs,
               arrayCumSum(arrayMap((x, i) -> toUInt32(i = 1
                   OR dateDiff('second', evs[i - 1].1, x.1) > {SESSION_GAP_SECONDS}),
                   evs, arrayEnumerate(evs))) AS sessions
        FROM (
            SELECT user,
                   arraySort(x -> x.1, groupArray((t, path, ref, campaign, source, device,
                                                   country))) AS evs
            FROM (SELECT {_PAGE_FIELDS} FROM events_unique WHERE {{where}})
            GROUP BY user
        )
    )
    ARRAY JOIN evs AS e, sessions AS s
    GROUP BY user, s
"""


def web_analytics(
    gateway: Gateway, project_id: str, start: datetime, end: datetime, interval: Interval
) -> WebResult:
    buckets = bucket_starts(start, end, interval, gateway.settings.max_series_buckets)
    params = Params()
    sessions = _SESSIONS.replace("{where}", _scope(params, project_id, start, end))
    totals_sql = f"""
        SELECT uniqExact(user), count(), sum(views), countIf(views = 1),
               avg(dateDiff('millisecond', started, ended)) / 1000
        FROM ({sessions})
    """
    visitors, count, views, bounces, duration = run_query(
        gateway, "web_totals", totals_sql, params, FINAL_PER_PARTITION
    )[0]
    count = int(count)
    totals = WebTotals(
        visitors=int(visitors),
        sessions=count,
        pageviews=int(views),
        bounce_rate=int(bounces) / count if count else None,
        views_per_session=int(views) / count if count else None,
        mean_session_seconds=float(duration) if count else None,
    )
    dims = ", ".join(f"('{name}', {_dimension(name)})" for name in DIMENSIONS)
    breakdown_sql = f"""
        SELECT d.1 AS dimension, d.2 AS value, uniqExact(user) AS visitors, count() AS n,
               sum(views), countIf(views = 1)
        FROM ({sessions}) ARRAY JOIN [{dims}] AS d
        GROUP BY dimension, value
        ORDER BY dimension, n DESC, value
        LIMIT {TOP} BY dimension
    """
    breakdowns: dict[str, list[WebRow]] = {name: [] for name in DIMENSIONS}
    for dim, value, users, n, pages, bounced in run_query(
        gateway, "web_breakdowns", breakdown_sql, params, FINAL_PER_PARTITION
    ):
        breakdowns[str(dim)].append(
            WebRow(
                value=str(value),
                visitors=int(users),
                sessions=int(n),
                pageviews=int(pages),
                bounce_rate=int(bounced) / int(n) if int(n) else None,
            )
        )
    page_params = Params()
    where = _scope(page_params, project_id, start, end)
    pages_sql = f"""
        SELECT path, uniqExact(user), count() AS n
        FROM (SELECT {_PAGE_FIELDS} FROM events_unique WHERE {where})
        GROUP BY path ORDER BY n DESC, path LIMIT {TOP}
    """
    pages = [
        WebRow(value=str(path) or "(none)", visitors=int(users), pageviews=int(n))
        for path, users, n in run_query(
            gateway, "web_pages", pages_sql, page_params, FINAL_PER_PARTITION
        )
    ]
    series_params = Params()
    first = buckets[0] if buckets else start
    series_sql = f"""
        SELECT toStartOfInterval(timestamp, INTERVAL 1 {interval.sql_unit}) AS bucket,
               uniqExact(distinct_id), count()
        FROM events_unique WHERE {_scope(series_params, project_id, first, end)}
        GROUP BY bucket
    """
    found: dict[datetime, tuple[Any, ...]] = {
        utc(row[0]): row
        for row in run_query(gateway, "web_series", series_sql, series_params, FINAL_PER_PARTITION)
    }
    series = [
        WebPoint(t=t, visitors=int(found[t][1]), pageviews=int(found[t][2]))
        if t in found
        else WebPoint(t=t, visitors=0, pageviews=0)
        for t in buckets
    ]
    return WebResult(
        from_=first,
        to=end,
        interval=interval,
        totals=totals,
        series=series,
        pages=pages,
        breakdowns=breakdowns,
    )


def _dimension(name: str) -> str:
    """SQL of a session's value for one dimension (fixed text: names are from DIMENSIONS)."""
    if name == "referrer":
        return "if(ref = '', '(direct)', domainWithoutWWW(ref))"
    if name in ("campaign", "source", "country"):
        return f"if({name} = '', '(none)', {name})"
    return name
