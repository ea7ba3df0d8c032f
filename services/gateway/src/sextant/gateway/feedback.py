"""Customer feedback: NPS and CSAT scores with their intervals, and the comments beside them.

Answers are ``Survey Responded`` events (:data:`sextant.schemas.config.SURVEY_EVENT`):
``survey`` (the survey's id), ``score`` and an optional ``comment``.

* **NPS** on 0–10: promoters answer 9 or 10, detractors 0 to 6; the score is
  ``100 · (promoters - detractors) / n``. Each answer is a draw of ``x ∈ {+1, 0, -1}``, so the
  score is 100 times the mean of ``x``, with variance ``(p₊ + p₋) - (p₊ - p₋)²`` per answer:
  the interval is the normal one around that mean (a test holds it equal to
  ``scipy.stats.norm.interval`` over the answers).
* **CSAT**: the share of answers at or above ``satisfied_from``; Wilson's score interval
  (equal to statsmodels' ``proportion_confint(method="wilson")``, tested).

A breakdown is by any property of the answer (``plan``, ``country`` …) or by the variant
each respondent was first exposed to in an experiment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sextant.gateway.context import Gateway
from sextant.gateway.sql import (
    DATETIME,
    FINAL_PER_PARTITION,
    Params,
    property_text,
    run_query,
    utc,
)
from sextant.schemas.config import SURVEY_EVENT, Survey, SurveyKind

Z95 = 1.959963984540054
MAX_COMMENTS = 200


@dataclass(frozen=True)
class Score:
    value: float
    low: float
    high: float
    n: int


def nps_score(promoters: int, passives: int, detractors: int, z: float = Z95) -> Score:
    """NPS (-100 to 100) and its normal interval."""
    n = promoters + passives + detractors
    if n == 0:
        return Score(math.nan, math.nan, math.nan, 0)
    p, d = promoters / n, detractors / n
    mean = p - d
    variance = max(0.0, (p + d) - mean * mean)
    half = z * math.sqrt(variance / n)
    return Score(100 * mean, 100 * (mean - half), 100 * (mean + half), n)


def csat_score(satisfied: int, n: int, z: float = Z95) -> Score:
    """The satisfied share (0 to 1) and Wilson's score interval."""
    if n == 0:
        return Score(math.nan, math.nan, math.nan, 0)
    p = satisfied / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Score(p, centre - half, centre + half, n)


class ScoreOut(BaseModel):
    breakdown: str | None = Field(description="The breakdown value; null for all answers")
    responses: int
    value: float | None = Field(description="NPS (-100..100) or CSAT (0..1)")
    low: float | None
    high: float | None
    promoters: int = 0
    passives: int = 0
    detractors: int = 0
    satisfied: int = 0
    distribution: dict[str, int] = Field(default_factory=dict, description="Answers per score")


class TimePoint(BaseModel):
    t: datetime
    responses: int
    value: float | None
    low: float | None
    high: float | None


class SurveyResult(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    survey: str
    survey_kind: SurveyKind
    question: str
    from_: datetime = Field(alias="from")
    to: datetime
    overall: ScoreOut
    groups: list[ScoreOut]
    daily: list[TimePoint]
    method: str


class Comment(BaseModel):
    timestamp: datetime
    distinct_id: str
    score: float | None
    comment: str
    breakdown: str | None = None


class CommentsResult(BaseModel):
    survey: str
    comments: list[Comment]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _score_out(survey: Survey, label: str | None, row: dict[str, int]) -> ScoreOut:
    n = row["n"]
    distribution = {k: v for k, v in row.items() if k.startswith("s:")}
    if survey.survey_kind is SurveyKind.NPS:
        passives = n - row["promoters"] - row["detractors"]
        score = nps_score(row["promoters"], passives, row["detractors"])
    else:
        passives = 0
        score = csat_score(row["satisfied"], n)
    return ScoreOut(
        breakdown=label,
        responses=n,
        value=_finite(score.value),
        low=_finite(score.low),
        high=_finite(score.high),
        promoters=row["promoters"],
        passives=passives,
        detractors=row["detractors"],
        satisfied=row["satisfied"],
        distribution={k[2:].lstrip("0") or "0": v for k, v in sorted(distribution.items())},
    )


def _base(params: Params, project_id: str, survey: Survey, start: datetime, end: datetime) -> str:
    return (
        f"project_id = {params.add(project_id, 'String')}"
        f" AND event = {params.add(SURVEY_EVENT, 'String')}"
        f" AND timestamp >= {params.add(start, DATETIME)}"
        f" AND timestamp < {params.add(end, DATETIME)}"
        f" AND {property_text(params, 'survey', 'survey')} = {params.add(survey.id, 'String')}"
    )


def _label_sql(
    params: Params, project_id: str, breakdown: str | None, experiment: str | None
) -> tuple[str, str]:
    """(label expression, join clause)."""
    if experiment is not None:
        join = f"""
            LEFT JOIN (
                SELECT unit_id AS distinct_id, argMin(variation_id, timestamp) AS variant
                FROM exposures_first
                WHERE project_id = {params.add(project_id, "String")}
                  AND experiment = {params.add(experiment, "String")}
                GROUP BY unit_id
            ) AS exposed USING (distinct_id)
        """
        return "if(variant = '', '(not exposed)', variant)", join
    if breakdown is not None:
        return "plabel", ""
    return "''", ""


def survey_result(
    gateway: Gateway,
    project_id: str,
    survey: Survey,
    start: datetime,
    end: datetime,
    breakdown: str | None = None,
    experiment: str | None = None,
) -> SurveyResult:
    params = Params()
    where = _base(params, project_id, survey, start, end)
    score = f"toFloat64OrNull({property_text(params, 'score', 'score')})"
    label, join = _label_sql(params, project_id, breakdown, experiment)
    plabel = property_text(params, breakdown, "breakdown") if breakdown is not None else "''"
    satisfied = params.add(float(survey.satisfied_from), "Float64")
    sql = f"""
        SELECT label, count() AS n, countIf(v >= 9), countIf(v <= 6), countIf(v >= {satisfied}),
               grouping(label) AS is_total,
               sumMap([toInt32(round(v))], [toUInt64(1)]) AS scores
        FROM (
            SELECT {label} AS label, v FROM (
                SELECT distinct_id, {score} AS v, {plabel} AS plabel
                FROM events_unique WHERE {where}
            ) AS answers {join}
            WHERE isNotNull(v)
        )
        GROUP BY GROUPING SETS ((label), ())
    """
    rows = run_query(gateway, "survey", sql, params, FINAL_PER_PARTITION)
    overall = _score_out(survey, None, _counts(None))
    groups: list[ScoreOut] = []
    for row in rows:
        counts = _counts(row)
        if int(row[5]):
            overall = _score_out(survey, None, counts)
        else:
            groups.append(_score_out(survey, str(row[0]) or None, counts))
    groups.sort(key=lambda g: -g.responses)
    return SurveyResult(
        survey=survey.id,
        survey_kind=survey.survey_kind,
        question=survey.question,
        from_=start,
        to=end,
        overall=overall,
        groups=groups if (breakdown or experiment) else [],
        daily=_daily(gateway, project_id, survey, start, end),
        method=(
            "NPS: % promoters (9-10) - % detractors (0-6), normal 95 % interval"
            if survey.survey_kind is SurveyKind.NPS
            else f"CSAT: share of scores >= {survey.satisfied_from}, Wilson 95 % interval"
        ),
    )


def _counts(row: tuple[Any, ...] | None) -> dict[str, int]:
    if row is None:
        return {"n": 0, "promoters": 0, "detractors": 0, "satisfied": 0}
    counts = {
        "n": int(row[1]),
        "promoters": int(row[2]),
        "detractors": int(row[3]),
        "satisfied": int(row[4]),
    }
    keys, values = row[6]
    for value, count in zip(keys, values, strict=True):
        counts[f"s:{int(value):02d}"] = int(count)
    return counts


def _daily(
    gateway: Gateway, project_id: str, survey: Survey, start: datetime, end: datetime
) -> list[TimePoint]:
    params = Params()
    where = _base(params, project_id, survey, start, end)
    score = f"toFloat64OrNull({property_text(params, 'score', 'score')})"
    satisfied = params.add(float(survey.satisfied_from), "Float64")
    sql = f"""
        SELECT toStartOfDay(timestamp) AS day, count() AS n, countIf(v >= 9),
               countIf(v <= 6), countIf(v >= {satisfied})
        FROM (SELECT timestamp, {score} AS v FROM events_unique WHERE {where})
        WHERE isNotNull(v)
        GROUP BY day ORDER BY day
    """
    points = []
    for day, n, promoters, detractors, happy in run_query(
        gateway, "survey_daily", sql, params, FINAL_PER_PARTITION
    ):
        if survey.survey_kind is SurveyKind.NPS:
            s = nps_score(
                int(promoters), int(n) - int(promoters) - int(detractors), int(detractors)
            )
        else:
            s = csat_score(int(happy), int(n))
        points.append(
            TimePoint(
                t=utc(day),
                responses=int(n),
                value=_finite(s.value),
                low=_finite(s.low),
                high=_finite(s.high),
            )
        )
    return points


def comments(
    gateway: Gateway,
    project_id: str,
    survey: Survey,
    start: datetime,
    end: datetime,
    search: str | None,
    breakdown: str | None,
    limit: int,
    score_filter: Literal["all", "promoters", "passives", "detractors"] = "all",
) -> CommentsResult:
    params = Params()
    where = _base(params, project_id, survey, start, end)
    comment = property_text(params, "comment", "comment")
    score = f"toFloat64OrNull({property_text(params, 'score', 'score')})"
    label = property_text(params, breakdown, "breakdown") if breakdown else "''"
    condition = f"{comment} != ''"
    if search:
        condition += (
            f" AND positionCaseInsensitiveUTF8({comment}, {params.add(search, 'String')}) > 0"
        )
    if score_filter == "promoters":
        condition += f" AND {score} >= 9"
    elif score_filter == "detractors":
        condition += f" AND {score} <= 6"
    elif score_filter == "passives":
        condition += f" AND {score} > 6 AND {score} < 9"
    sql = f"""
        SELECT timestamp, distinct_id, {score}, {comment}, {label}
        FROM events_unique WHERE {where} AND {condition}
        ORDER BY timestamp DESC LIMIT {min(int(limit), MAX_COMMENTS)}
    """
    rows = run_query(gateway, "survey_comments", sql, params, FINAL_PER_PARTITION)
    return CommentsResult(
        survey=survey.id,
        comments=[
            Comment(
                timestamp=utc(t),
                distinct_id=str(user),
                score=None if s is None else float(s),
                comment=str(text),
                breakdown=(str(b) or None) if breakdown else None,
            )
            for t, user, s, text, b in rows
        ],
    )
