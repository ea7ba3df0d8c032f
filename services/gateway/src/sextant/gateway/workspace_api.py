"""What the workspace reads beyond the metric, insight, experiment and alert routes:
outcomes, surveys (NPS and CSAT, comments), web analytics, an experiment's time to a
decision, and who the key is. Read key, the key's project only (as :mod:`read_api`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from sextant.gateway import experiments, feedback, outcomes, power, web
from sextant.gateway.auth import ReadScope
from sextant.gateway.context import GatewayDep
from sextant.gateway.problems import not_found, problem_responses
from sextant.gateway.read_api import _range
from sextant.gateway.series import Interval
from sextant.gateway.sql import DATETIME, Params, run_query, utc
from sextant.schemas.config import (
    IDENTIFIER,
    PROPERTY_NAME,
    Experiment,
    Outcome,
    Role,
    Survey,
)

router = APIRouter(prefix="/v1")
_ERRORS = problem_responses(401, 403, 404, 422, 503)
DocKey = Annotated[str, Path(pattern=IDENTIFIER, examples=["nps"])]
From = Annotated[datetime | None, Query(alias="from", examples=["2025-03-01T00:00:00Z"])]
To = Annotated[datetime | None, Query(examples=["2025-03-08T00:00:00Z"])]
Breakdown = Annotated[
    str | None,
    Query(pattern=PROPERTY_NAME, description="A property of the answers", examples=["plan"]),
]


class WhoAmI(BaseModel):
    project_id: str
    project_name: str
    key_id: str
    role: Role
    """The key's role in its project (an owner reads the audit log too)."""


@router.get(
    "/whoami", tags=["metrics"], summary="The read key's project and role", responses=_ERRORS
)
def whoami(scope: ReadScope, gateway: GatewayDep) -> WhoAmI:
    project = gateway.state.project(scope.project_id)
    return WhoAmI(
        project_id=scope.project_id,
        project_name=project.name if project else scope.project_id,
        key_id=scope.key_id,
        role=scope.role or Role.VIEWER,
    )


class EventName(BaseModel):
    event: str
    count: int


@router.get(
    "/events",
    tags=["insights"],
    summary="The event names of the last 30 days, most frequent first",
    responses=_ERRORS,
)
def event_names(scope: ReadScope, gateway: GatewayDep) -> list[EventName]:
    params = Params()
    since = datetime.now(UTC) - timedelta(days=30)
    sql = f"""
        SELECT event, count() AS n FROM events
        WHERE project_id = {params.add(scope.project_id, "String")}
          AND timestamp >= {params.add(since, DATETIME)}
        GROUP BY event ORDER BY n DESC, event LIMIT 500
    """
    return [
        EventName(event=str(e), count=int(n)) for e, n in run_query(gateway, "events", sql, params)
    ]


# --- Outcomes --------------------------------------------------------------------------------


@router.get(
    "/outcomes",
    tags=["outcomes"],
    summary="Each outcome: value, trend, progress to target, forecast, what aims at it",
    responses=_ERRORS,
)
def list_outcomes(scope: ReadScope, gateway: GatewayDep) -> list[outcomes.OutcomeView]:
    state = gateway.state
    metrics = {m.id: m for m in state.metrics(scope.project_id)}
    now = datetime.now(UTC)
    return [
        outcomes.outcome_view(
            gateway,
            scope.project_id,
            outcome,
            metrics.get(outcome.metric),
            state.experiments(scope.project_id),
            state.features(scope.project_id),
            now,
        )
        for outcome in sorted(state.of_kind(Outcome, scope.project_id), key=lambda o: o.id)
    ]


# --- Surveys ---------------------------------------------------------------------------------


def _survey(gateway: GatewayDep, project_id: str, key: str) -> Survey:
    survey = gateway.state.get(f"survey:{project_id}:{key}")
    if not isinstance(survey, Survey):
        raise not_found(f"survey '{key}'", "key")
    return survey


@router.get("/surveys", tags=["feedback"], summary="The project's surveys", responses=_ERRORS)
def list_surveys(scope: ReadScope, gateway: GatewayDep) -> list[Survey]:
    return sorted(gateway.state.of_kind(Survey, scope.project_id), key=lambda s: s.id)


@router.get(
    "/surveys/{key}/results",
    tags=["feedback"],
    summary="NPS or CSAT with its 95 % interval, per day, and by a property or a variant",
    responses=_ERRORS,
)
def survey_results(
    scope: ReadScope,
    gateway: GatewayDep,
    key: DocKey,
    from_: From = None,
    to: To = None,
    breakdown: Breakdown = None,
    experiment: Annotated[
        str | None,
        Query(
            pattern=IDENTIFIER,
            description="Break down by this experiment's variants",
            examples=["new-checkout"],
        ),
    ] = None,
) -> feedback.SurveyResult:
    survey = _survey(gateway, scope.project_id, key)
    start, end = _range(from_, to, timedelta(days=30))
    return feedback.survey_result(
        gateway, scope.project_id, survey, start, end, breakdown, experiment
    )


@router.get(
    "/surveys/{key}/comments",
    tags=["feedback"],
    summary="Comments of a survey's answers, newest first, searchable",
    responses=_ERRORS,
)
def survey_comments(
    scope: ReadScope,
    gateway: GatewayDep,
    key: DocKey,
    from_: From = None,
    to: To = None,
    q: Annotated[
        str | None,
        Query(max_length=200, description="Text the comment contains", examples=["slow"]),
    ] = None,
    breakdown: Breakdown = None,
    scores: Annotated[
        Literal["all", "promoters", "passives", "detractors"],
        Query(description="Only the comments of these scores", examples=["detractors"]),
    ] = "all",
    limit: Annotated[
        int, Query(ge=1, le=feedback.MAX_COMMENTS, description="At most", examples=[50])
    ] = 50,
) -> feedback.CommentsResult:
    survey = _survey(gateway, scope.project_id, key)
    start, end = _range(from_, to, timedelta(days=30))
    return feedback.comments(
        gateway, scope.project_id, survey, start, end, q or None, breakdown, limit, scores
    )


# --- Web analytics ---------------------------------------------------------------------------


@router.get(
    "/web",
    tags=["insights"],
    summary="Visitors, sessions, bounce rate, pages, referrers, campaigns, devices, countries",
    responses=_ERRORS,
)
def web_route(
    scope: ReadScope,
    gateway: GatewayDep,
    from_: From = None,
    to: To = None,
    interval: Annotated[Interval, Query(description="Bucket size", examples=["hour"])] = (
        Interval.HOUR
    ),
) -> web.WebResult:
    start, end = _range(from_, to, timedelta(days=1))
    return web.web_analytics(gateway, scope.project_id, start, end, interval)


# --- Experiments: time to a decision ---------------------------------------------------------


class Decision(BaseModel):
    experiment: str
    metric: str | None
    minimum_detectable_effect: float
    power: float
    baseline: float | None
    units_per_variant: int
    units_per_variant_needed: int | None
    units_per_variant_needed_always_valid: int | None
    units_per_day: float | None
    days_remaining: float | None
    days_remaining_always_valid: float | None
    started: datetime | None
    method: str


@router.get(
    "/experiments/{key}/decision",
    tags=["experiments"],
    summary="How long until the primary metric can decide, at the current traffic",
    responses=_ERRORS,
)
def decision_route(scope: ReadScope, gateway: GatewayDep, key: DocKey) -> Decision:
    experiment = gateway.state.get(f"experiment:{scope.project_id}:{key}")
    if not isinstance(experiment, Experiment):
        raise not_found(f"experiment '{key}'", "key")
    metrics = {m.id: m for m in gateway.state.metrics(scope.project_id)}
    results = experiments.experiment_results(gateway, scope.project_id, experiment, metrics)
    return decision(gateway, scope.project_id, experiment, results)


def decision(
    gateway: GatewayDep,
    project_id: str,
    experiment: Experiment,
    results: experiments.ExperimentResults,
) -> Decision:
    started = experiment.start or _first_exposure(gateway, project_id, experiment.id)
    primary = next((m for m in results.metrics if m.role == "primary"), None)
    units = min((v.units for v in results.variants), default=0)
    base = Decision(
        experiment=experiment.id,
        metric=primary.metric if primary else None,
        minimum_detectable_effect=experiment.minimum_detectable_effect,
        power=experiment.power,
        baseline=None,
        units_per_variant=units,
        units_per_variant_needed=None,
        units_per_variant_needed_always_valid=None,
        units_per_day=None,
        days_remaining=None,
        days_remaining_always_valid=None,
        started=started,
        method=power.PowerPlan.method,
    )
    if primary is None or not primary.comparisons or not primary.variants:
        return base
    control = primary.variants[0]
    se = primary.comparisons[0].absolute.se
    if control.mean is None or se is None or not se > 0 or units == 0:
        return base.model_copy(update={"baseline": control.mean})
    effect = experiment.minimum_detectable_effect * abs(control.mean)
    if effect == 0:
        return base.model_copy(update={"baseline": control.mean})
    elapsed = (datetime.now(UTC) - started).total_seconds() / 86_400 if started else None
    plan = power.plan(
        units, se, effect, elapsed, results.alpha, experiment.power, max(2, len(results.variants))
    )
    return base.model_copy(
        update={
            "baseline": control.mean,
            "units_per_variant_needed": plan.units_per_variant_needed,
            "units_per_variant_needed_always_valid": plan.units_per_variant_needed_always_valid,
            "units_per_day": plan.units_per_day,
            "days_remaining": plan.days_remaining,
            "days_remaining_always_valid": plan.days_remaining_always_valid,
        }
    )


def _first_exposure(gateway: GatewayDep, project_id: str, experiment: str) -> datetime | None:
    params = Params()
    sql = f"""
        SELECT min(timestamp), count() FROM exposures
        WHERE project_id = {params.add(project_id, "String")}
          AND experiment = {params.add(experiment, "String")}
    """
    first, count = run_query(gateway, "first_exposure", sql, params)[0]
    return utc(first) if int(count) else None
