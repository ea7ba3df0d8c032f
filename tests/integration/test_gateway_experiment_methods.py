"""CUPED, ratio, quantile and Bayesian read-outs through the real results endpoint.

Units, their events before and after exposure, go into the embedded engine; the endpoint's
numbers are checked against scipy, statsmodels (and, for quantile intervals, gbstats)
recomputed from the generated units themselves.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gbstats.frequentist.tests import FrequentistConfig, TwoSidedTTest
from gbstats.models.statistics import QuantileClusteredStatistic, QuantileStatistic
from numpy.typing import NDArray
from scipy import integrate, optimize
from scipy import stats as scipy_stats
from statsmodels.stats._delta_method import NonlinearDeltaCov

from sextant.gateway import estimators
from sextant.schemas.config import Experiment, MetricDefinition, MetricKind, Variant
from sextant.schemas.statistics import EffectPrior
from tests.integration.test_gateway_harness import Harness, make_harness

Array = NDArray[np.float64]
T0 = datetime(2025, 9, 1, tzinfo=UTC)
LOOKBACK = 14
PRIOR = EffectPrior(mean=0.0, stddev=0.1)
METRICS = [
    MetricDefinition(
        id="revenue", project_id="acme", metric_kind=MetricKind.SUM, event="Purchase",
        property="amount", prior=PRIOR,
    ),
    MetricDefinition(
        id="purchases", project_id="acme", metric_kind=MetricKind.COUNT, event="Purchase",
        higher_is_better=False,
    ),
    MetricDefinition(
        id="revenue_per_purchase", project_id="acme", metric_kind=MetricKind.SUM,
        event="Purchase", property="amount", denominator_metric="purchases",
    ),
    MetricDefinition(
        id="amount_p90", project_id="acme", metric_kind=MetricKind.PERCENTILES,
        event="Purchase", property="amount", quantile=0.9,
    ),
    MetricDefinition(
        id="unit_revenue_p50", project_id="acme", metric_kind=MetricKind.PERCENTILES,
        event="Purchase", property="amount", quantile=0.5, quantile_scope="unit",
    ),
]  # fmt: skip
GUARDRAILS = ["purchases", "revenue_per_purchase", "amount_p90", "unit_revenue_p50"]


@dataclass
class Unit:
    post_amounts: list[float] = field(default_factory=list)
    pre_amounts: list[float] = field(default_factory=list)

    @property
    def x(self) -> float:
        return float(sum(self.post_amounts))

    @property
    def x_pre(self) -> float:
        return float(sum(self.pre_amounts))


@dataclass
class Truth:
    units: dict[str, list[Unit]] = field(default_factory=dict)

    def column(self, variant: str, name: str) -> Array:
        units = self.units[variant]
        values = {
            "revenue": [u.x for u in units],
            "revenue_pre": [u.x_pre for u in units],
            "purchases": [len(u.post_amounts) for u in units],
            "purchases_pre": [len(u.pre_amounts) for u in units],
        }[name]
        return np.asarray(values, dtype=float)


def generate(harness: Harness, key: str, per_variant: int, seed: int) -> Truth:
    """Units whose spending before exposure predicts their spending after it; about a
    third have no events in the look-back window (they count with a covariate of 0)."""
    rng = np.random.default_rng(seed)
    truth = Truth()
    exposures: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for variant, lift in (("control", 1.0), ("treat", 1.15)):
        units = truth.units.setdefault(variant, [])
        for i in range(per_variant):
            name = f"{key}-{variant}-{i}"
            exposed = T0 + timedelta(minutes=i)
            exposures.append(
                {"experiment": key, "unit_id": name, "variation_id": variant, "timestamp": exposed}
            )
            propensity = float(rng.gamma(1.5, 1.0))
            unit = Unit()
            for j in range(int(rng.poisson(propensity))):
                amount = float(np.round(rng.lognormal(3.0, 0.5), 2))
                unit.pre_amounts.append(amount)
                when = exposed - timedelta(days=1 + j % 12, minutes=j)
                events.append(_purchase(name, when, amount))
            for j in range(int(rng.poisson(propensity * lift))):
                amount = float(np.round(rng.lognormal(3.0, 0.5) * lift, 2))
                unit.post_amounts.append(amount)
                events.append(_purchase(name, exposed + timedelta(minutes=5 + j), amount))
            # Older than the look-back window: neither covariate nor metric.
            events.append(_purchase(name, exposed - timedelta(days=LOOKBACK, minutes=1), 500.0))
            units.append(unit)
    harness.insert_exposures(exposures)
    harness.insert_events(events)
    return truth


def _purchase(unit: str, when: datetime, amount: float) -> dict[str, Any]:
    return {
        "event": "Purchase",
        "distinct_id": unit,
        "timestamp": when,
        "properties": {"amount": amount},
    }


@pytest.fixture(scope="module")
def harness(kafka_bootstrap: str, warehouse_root: Path) -> Iterator[Harness]:
    with make_harness(kafka_bootstrap, warehouse_root) as running:
        running.put_config(*METRICS)
        yield running


@pytest.fixture(scope="module")
def experiment_data(harness: Harness) -> tuple[dict[str, Any], Truth]:
    experiment = Experiment(
        id="methods",
        project_id="acme",
        variants=[Variant(id="control", weight=0.5), Variant(id="treat", weight=0.5)],
        primary_metric="revenue",
        guardrail_metrics=GUARDRAILS,
        min_sample_per_variant=20,
        start=T0 - timedelta(days=1),
        stop=T0 + timedelta(days=10),
        cuped_lookback_days=LOOKBACK,
    )
    harness.put_config(experiment)
    truth = generate(harness, "methods", 600, seed=2025)
    response = harness.client.get("/v1/experiments/methods/results", headers=harness.read)
    assert response.status_code == 200, response.text
    return response.json(), truth


def _metric(body: dict[str, Any], key: str) -> dict[str, Any]:
    found: dict[str, Any] = next(m for m in body["metrics"] if m["metric"] == key)
    assert found["error"] is None
    return found


def test_cuped_lift_is_welch_on_the_adjusted_units(
    experiment_data: tuple[dict[str, Any], Truth],
) -> None:
    body, truth = experiment_data
    result = _metric(body, "revenue")
    assert result["method"]["variance_reduction"] == "cuped"
    assert result["method"]["lookback_days"] == LOOKBACK
    comparison = result["comparisons"][0]
    x_c, x_t = truth.column("control", "revenue"), truth.column("treat", "revenue")
    u_c, u_t = truth.column("control", "revenue_pre"), truth.column("treat", "revenue_pre")
    x, u = np.concatenate([x_c, x_t]), np.concatenate([u_c, u_t])
    theta = np.cov(x, u)[0, 1] / np.var(u, ddof=1)
    assert comparison["cuped"]["theta"] == pytest.approx(theta, rel=1e-9)
    assert result["variants"][0]["units_with_pre"] == int(np.count_nonzero(u_c))
    assert result["variants"][0]["pre_mean"] == pytest.approx(u_c.mean(), rel=1e-9)

    z_c, z_t = x_c - theta * u_c, x_t - theta * u_t
    welch = scipy_stats.ttest_ind(z_t, z_c, equal_var=False)
    ci = welch.confidence_interval(0.95)
    absolute = comparison["absolute"]
    assert absolute["estimate"] == pytest.approx(z_t.mean() - z_c.mean(), rel=1e-9)
    assert absolute["p_value"] == pytest.approx(welch.pvalue, rel=1e-6)
    assert absolute["ci"]["low"] == pytest.approx(ci.low, rel=1e-6)
    assert absolute["ci"]["high"] == pytest.approx(ci.high, rel=1e-6)
    assert comparison["cuped"]["control_adjusted"] == pytest.approx(z_c.mean(), rel=1e-9)
    plain = scipy_stats.ttest_ind(x_t, x_c, equal_var=False)
    assert comparison["cuped"]["unadjusted_absolute"]["p_value"] == pytest.approx(
        plain.pvalue, rel=1e-6
    )
    # The adjustment narrows the interval as the pre/post correlation says it should.
    rho = np.corrcoef(x, u)[0, 1]
    narrowing = absolute["se"] / comparison["cuped"]["unadjusted_absolute"]["se"]
    assert narrowing == pytest.approx(math.sqrt(1 - rho**2), rel=0.05)

    # Relative lift: statsmodels' delta method over (adjusted treatment mean, control post
    # and pre means). GrowthBook's gradient in the control mean is -x̄_t / x̄_c², where the
    # exact one has x̄_t - θ (ū_t - ū_c), a difference of zero expectation under
    # randomisation: with its gradient the two agree exactly, with the exact one closely.
    params = np.array([z_t.mean(), x_c.mean(), u_c.mean()])
    cov = np.zeros((3, 3))
    cov[0, 0] = np.var(z_t, ddof=1) / len(z_t)
    cov[1:, 1:] = np.cov(x_c, u_c) / len(x_c)

    def lift(p: Array) -> Array:
        return np.atleast_1d((p[0] - (p[1] - theta * p[2])) / p[1])

    def growthbook_gradient(p: Array) -> Array:
        return np.array([[1 / p[1], -x_t.mean() / p[1] ** 2, theta / p[1]]])

    exact = NonlinearDeltaCov(lift, params, cov)
    growthbook = NonlinearDeltaCov(lift, params, cov, deriv=growthbook_gradient)
    relative = comparison["relative"]
    assert relative["estimate"] == pytest.approx(float(exact.predicted()[0]), rel=1e-9)
    assert relative["se"] == pytest.approx(float(growthbook.se_vectorized()[0]), rel=1e-9)
    assert relative["se"] == pytest.approx(float(exact.se_vectorized()[0]), rel=0.05)


def test_ratio_metric_of_two_metrics_with_cuped(
    experiment_data: tuple[dict[str, Any], Truth],
) -> None:
    body, truth = experiment_data
    result = _metric(body, "revenue_per_purchase")
    assert result["analysed_as"] == "ratio"
    assert result["method"]["variance_reduction"] == "cuped_ratio"
    comparison = result["comparisons"][0]
    arms = []
    for variant in ("control", "treat"):
        columns = [
            truth.column(variant, name)
            for name in ("revenue", "purchases", "revenue_pre", "purchases_pre")
        ]
        arms.append((np.mean(columns, axis=1), np.cov(columns) / len(columns[0])))
    params = np.concatenate([arms[1][0], arms[0][0]])
    cov = np.zeros((8, 8))
    cov[:4, :4], cov[4:, 4:] = arms[1][1], arms[0][1]

    def adjusted_lift(theta: float) -> NonlinearDeltaCov:
        def f(p: Array) -> Array:
            return np.atleast_1d(
                (p[0] / p[1] - theta * p[2] / p[3]) - (p[4] / p[5] - theta * p[6] / p[7])
            )

        return NonlinearDeltaCov(f, params, cov)

    theta = comparison["cuped"]["theta"]
    reference = adjusted_lift(theta)
    absolute = comparison["absolute"]
    assert absolute["estimate"] == pytest.approx(float(reference.predicted()[0]), rel=1e-9)
    assert absolute["se"] == pytest.approx(float(reference.se_vectorized()[0]), rel=1e-5)
    # θ is the adjustment that makes the lift's variance smallest (up to GrowthBook's
    # pooling of the two arms' per-unit variances rather than of their means').
    best = optimize.minimize_scalar(lambda t: float(adjusted_lift(t).var()[0]))
    assert theta == pytest.approx(best.x, rel=0.05)
    # Without adjustment: the plain delta-method ratio lift.
    plain = adjusted_lift(0.0)
    unadjusted = comparison["cuped"]["unadjusted_absolute"]
    assert unadjusted["estimate"] == pytest.approx(float(plain.predicted()[0]), rel=1e-9)
    assert unadjusted["se"] == pytest.approx(float(plain.se_vectorized()[0]), rel=1e-5)
    means = [v["mean"] for v in result["variants"]]
    assert means == pytest.approx(
        [
            truth.column(v, "revenue").sum() / truth.column(v, "purchases").sum()
            for v in ("control", "treat")
        ],
        rel=1e-9,
    )


def _reference_quantile(
    values: Array, nu: float, clusters: Array | None, units: int
) -> QuantileStatistic:
    n = len(values)
    low, high = estimators.quantile_bound_levels(nu, n)
    estimate, lower, upper = (float(q) for q in np.quantile(values, [nu, low, high]))
    common = {
        "n": n,
        "n_star": n,
        "nu": nu,
        "quantile_hat": estimate,
        "quantile_lower": lower,
        "quantile_upper": upper,
    }
    if clusters is None:
        return QuantileStatistic(**common)
    c = np.bincount(clusters, weights=(values <= estimate).astype(float), minlength=units)
    m = np.bincount(clusters, minlength=units).astype(float)
    return QuantileClusteredStatistic(
        **common,
        main_sum=float(c.sum()),
        main_sum_squares=float((c * c).sum()),
        denominator_sum=float(m.sum()),
        denominator_sum_squares=float((m * m).sum()),
        main_denominator_sum_product=float((c * m).sum()),
        n_clusters=units,
    )


@pytest.mark.parametrize(("key", "scope"), [("amount_p90", "event"), ("unit_revenue_p50", "unit")])
def test_quantile_metrics(
    experiment_data: tuple[dict[str, Any], Truth], key: str, scope: str
) -> None:
    body, truth = experiment_data
    result = _metric(body, key)
    assert result["analysed_as"] == "quantile"
    schedule = result["quantile"]
    assert schedule["scope"] == scope
    assert schedule["refresh_seconds"] == 300
    computed_at = datetime.fromisoformat(schedule["computed_at"])
    assert datetime.fromisoformat(schedule["next_refresh_after"]) == computed_at + timedelta(
        seconds=300
    )
    nu = schedule["level"]
    references = []
    for position, variant in enumerate(("control", "treat")):
        units = truth.units[variant]
        if scope == "event":
            values = np.array([a for u in units for a in u.post_amounts])
            clusters = np.repeat(np.arange(len(units)), [len(u.post_amounts) for u in units])
            reference = _reference_quantile(values, nu, clusters, len(units))
        else:
            values = np.array([u.x for u in units if u.post_amounts])
            reference = _reference_quantile(values, nu, None, 0)
        references.append(reference)
        found = result["variants"][position]["quantile"]
        assert found["observations"] == len(values)
        assert found["estimate"] == pytest.approx(reference.quantile_hat, rel=1e-9)
        assert found["lower"] == pytest.approx(reference.quantile_lower, rel=1e-9)
        assert found["upper"] == pytest.approx(reference.quantile_upper, rel=1e-9)
    comparison = result["comparisons"][0]
    for kind in ("absolute", "relative"):
        theirs = TwoSidedTTest(
            references[0], references[1], FrequentistConfig(difference_type=kind)
        ).compute_result()
        assert comparison[kind]["estimate"] == pytest.approx(theirs.expected, rel=1e-6)
        assert comparison[kind]["ci"]["low"] == pytest.approx(theirs.ci[0], rel=1e-6)
        assert comparison[kind]["ci"]["high"] == pytest.approx(theirs.ci[1], rel=1e-6)


def _posterior_read_out(
    estimate: float, se: float, prior: tuple[float, float] | None, higher_is_better: bool
) -> dict[str, float]:
    """Chance to win, risks and credible interval from scipy: conjugate Gaussian update,
    then the expected losses integrated numerically."""
    if prior is None:
        mean, sd = estimate, se
    else:
        m0, v0 = prior
        variance = 1 / (1 / se**2 + 1 / v0)
        mean, sd = variance * (estimate / se**2 + m0 / v0), math.sqrt(variance)
    posterior = scipy_stats.norm(mean, sd)
    gain = integrate.quad(lambda d: d * posterior.pdf(d), 0, np.inf)[0]
    loss = integrate.quad(lambda d: -d * posterior.pdf(d), -np.inf, 0)[0]
    win = posterior.sf(0)
    if not higher_is_better:
        win, gain, loss = 1 - win, loss, gain
    low, high = posterior.ppf([0.025, 0.975])
    return {"win": win, "risk": loss, "risk_control": gain, "low": low, "high": high, "mean": mean}


@pytest.mark.parametrize("key", ["revenue", "purchases", "revenue_per_purchase", "amount_p90"])
def test_bayesian_read_out(experiment_data: tuple[dict[str, Any], Truth], key: str) -> None:
    body, _ = experiment_data
    result = _metric(body, key)
    metric = next(m for m in METRICS if m.id == key)
    prior = result["method"]["prior"]
    assert prior["kind"] == ("gaussian" if metric.prior else "flat")
    assert result["method"]["bayesian"] == "gaussian_effect"
    comparison = result["comparisons"][0]
    control_mean = result["variants"][0]["mean"]  # unadjusted: it scales the prior
    for kind in ("absolute", "relative"):
        read_out = comparison["bayesian"][kind]
        given = None
        if metric.prior is not None:
            scale = 1.0 if kind == "relative" else abs(control_mean)
            given = (metric.prior.mean * scale, (metric.prior.stddev * scale) ** 2)
        expected = _posterior_read_out(
            comparison[kind]["estimate"], comparison[kind]["se"], given, metric.higher_is_better
        )
        assert read_out["expected"] == pytest.approx(expected["mean"], rel=1e-9)
        assert read_out["chance_to_win"] == pytest.approx(expected["win"], rel=1e-9, abs=1e-15)
        assert read_out["risk"]["treatment"] == pytest.approx(expected["risk"], rel=1e-7, abs=1e-12)
        assert read_out["risk"]["control"] == pytest.approx(
            expected["risk_control"], rel=1e-7, abs=1e-12
        )
        assert read_out["credible_interval"]["low"] == pytest.approx(expected["low"], rel=1e-9)
        assert read_out["credible_interval"]["high"] == pytest.approx(expected["high"], rel=1e-9)


def test_quantiles_are_kept_until_their_refresh(
    harness: Harness, experiment_data: tuple[dict[str, Any], Truth]
) -> None:
    """A new event does not move a cached quantile before its refresh; the means move."""
    body, _ = experiment_data
    harness.insert_events([_purchase("methods-control-0", T0 + timedelta(hours=1), 10_000.0)])
    again = harness.client.get("/v1/experiments/methods/results", headers=harness.read).json()
    before, after = _metric(body, "amount_p90"), _metric(again, "amount_p90")
    assert after["quantile"] == before["quantile"]
    assert after["variants"] == before["variants"]
    assert after["comparisons"][0]["absolute"] == before["comparisons"][0]["absolute"]
    assert _metric(again, "revenue")["variants"] != _metric(body, "revenue")["variants"]


def test_the_response_names_every_method(experiment_data: tuple[dict[str, Any], Truth]) -> None:
    body, _ = experiment_data
    assert body["cuped_lookback_days"] == LOOKBACK
    tests = {m["metric"]: m["method"]["test"] for m in body["metrics"]}
    assert tests == {
        "revenue": "welch_t",
        "purchases": "welch_t",
        "revenue_per_purchase": "delta_method_t",
        "amount_p90": "quantile_t",
        "unit_revenue_p50": "quantile_t",
    }
    for metric in body["metrics"]:
        assert metric["method"]["correction"] == "holm"
        assert metric["method"]["sequential"] == "asymptotic_confidence_sequence"
        assert metric["method"]["documentation"] == "docs/experiment-statistics.md"
    # Lower is better for purchases: a rise is a loss, and the chance to win says so.
    purchases = _metric(body, "purchases")["comparisons"][0]
    if purchases["absolute"]["estimate"] > 0:
        assert purchases["bayesian"]["absolute"]["chance_to_win"] < 0.5
