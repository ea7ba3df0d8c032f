"""Example requests and responses for the OpenAPI document (and for readers of the API)."""

from __future__ import annotations

from typing import Any

PROJECT: dict[str, Any] = {
    "kind": "project",
    "id": "shop",
    "project_id": "shop",
    "name": "Online shop",
    "allowed_lateness_seconds": 300,
    "ip_policy": "truncate",
    "rate_limit_per_second": 10000,
}
PROJECT_INPUT: dict[str, Any] = {"id": "shop", "name": "Online shop", "ip_policy": "truncate"}

KEY_VIEW: dict[str, Any] = {
    "id": "web-read",
    "project_id": "shop",
    "key_kind": "read",
    "name": "Dashboard",
    "revoked": False,
    "created_at": "2025-03-01T09:30:00Z",
}
KEY_INPUT: dict[str, Any] = {"id": "web-read", "kind": "read", "name": "Dashboard"}
KEY_CREATED: dict[str, Any] = {"key": KEY_VIEW, "secret": "sx_read_3q2-7wEXAMPLEvI0c3xN1Hk5XbX1wq9"}

METRIC: dict[str, Any] = {
    "kind": "metric",
    "id": "revenue",
    "project_id": "shop",
    "name": "Revenue",
    "metric_kind": "sum",
    "event": "Order Completed",
    "property": "revenue",
    "conversion_event": None,
    "conversion_window_seconds": 86400,
    "filters": [{"property": "test_order", "op": "neq", "value": True}],
    "breakdown": "currency",
    "breakdown_limit": 10,
}
METRIC_INPUT: dict[str, Any] = {
    "id": "revenue",
    "name": "Revenue",
    "metric_kind": "sum",
    "event": "Order Completed",
    "property": "revenue",
    "filters": [{"property": "test_order", "op": "neq", "value": True}],
    "breakdown": "currency",
}

EXPERIMENT: dict[str, Any] = {
    "kind": "experiment",
    "id": "new-checkout",
    "project_id": "shop",
    "name": "One-page checkout",
    "variants": [
        {"id": "control", "name": "", "weight": 0.5},
        {"id": "one-page", "name": "", "weight": 0.5},
    ],
    "coverage": 1.0,
    "seed": None,
    "hash_version": 2,
    "unit": "userId",
    "primary_metric": "checkout-conversion",
    "guardrail_metrics": ["order-value"],
    "correction": "holm",
    "min_sample_per_variant": 100,
    "start": "2025-03-01T00:00:00Z",
    "stop": None,
}
EXPERIMENT_INPUT: dict[str, Any] = {
    "id": "new-checkout",
    "name": "One-page checkout",
    "variants": [{"id": "control", "weight": 0.5}, {"id": "one-page", "weight": 0.5}],
    "primary_metric": "checkout-conversion",
    "guardrail_metrics": ["order-value"],
    "start": "2025-03-01T00:00:00Z",
}

ALERT_RULE: dict[str, Any] = {
    "kind": "alert_rule",
    "id": "checkout-drop",
    "project_id": "shop",
    "name": "Checkout conversion dropped",
    "rule_kind": "threshold",
    "metric": "checkout-conversion",
    "experiment": None,
    "direction": "below",
    "threshold": 0.05,
    "baseline": "day",
    "change_percent": None,
    "k_sigma": 3.0,
    "ewma_alpha": 0.1,
    "min_volume": 0,
    "min_effect": 0.0,
    "evaluation_window_minutes": 1,
    "pending_windows": 2,
    "recovery_windows": 1,
    "severity": "critical",
    "targets": [{"url": "https://hooks.example.com/sextant", "secret": "", "format": "json"}],
}
ALERT_RULE_INPUT: dict[str, Any] = {
    "id": "checkout-drop",
    "rule_kind": "threshold",
    "metric": "checkout-conversion",
    "direction": "below",
    "threshold": 0.05,
    "pending_windows": 2,
    "severity": "critical",
}

TRACKING_PLAN: dict[str, Any] = {
    "kind": "tracking_plan",
    "id": "default",
    "project_id": "shop",
    "mode": "flag",
    "events": {
        "Order Completed": {
            "type": "object",
            "required": ["revenue"],
            "properties": {"revenue": {"type": "number", "minimum": 0}},
        }
    },
}
TRACKING_PLAN_INPUT: dict[str, Any] = {k: v for k, v in TRACKING_PLAN.items() if k != "kind"}
TRACKING_PLAN_INPUT.pop("project_id")

APPLY_YAML = """\
admin_keys: [{id: ops, secret: "replace-with-a-long-random-secret"}]
projects:
  - id: shop
    name: Online shop
    keys: [{id: web, kind: write, secret: "replace-with-a-long-random-secret"}]
    metrics: [{id: signups, metric_kind: count, event: Signed Up}]
"""
APPLY_RESULT: dict[str, Any] = {
    "applied": 4,
    "keys": ["api_key:*:ops", "project:shop:shop", "api_key:shop:web", "metric:shop:signups"],
}

SERIES: dict[str, Any] = {
    "metric": "revenue",
    "metric_kind": "sum",
    "interval": "hour",
    "from": "2025-03-01T00:00:00Z",
    "to": "2025-03-01T02:00:00Z",
    "series": [
        {
            "breakdown": None,
            "points": [
                {
                    "t": "2025-03-01T00:00:00Z",
                    "value": 1520.5,
                    "count": 31,
                    "sum": 1520.5,
                    "denominator": 0,
                    "quantiles": None,
                },
                {
                    "t": "2025-03-01T01:00:00Z",
                    "value": 980.0,
                    "count": 22,
                    "sum": 980.0,
                    "denominator": 0,
                    "quantiles": None,
                },
            ],
        }
    ],
}

TRENDS_REQUEST: dict[str, Any] = {
    "event": "Order Completed",
    "measure": "count",
    "from": "2025-03-01T00:00:00Z",
    "to": "2025-03-02T00:00:00Z",
    "interval": "hour",
    "filters": [{"property": "currency", "op": "in", "value": ["EUR", "USD"]}],
    "breakdown": {"property": "plan", "type": "person"},
    "breakdown_limit": 5,
}
TRENDS_RESULT: dict[str, Any] = {
    "event": "Order Completed",
    "measure": "count",
    "interval": "hour",
    "series": [
        {
            "breakdown": "pro",
            "total": 12,
            "points": [
                {"t": "2025-03-01T00:00:00Z", "value": 7},
                {"t": "2025-03-01T01:00:00Z", "value": 5},
            ],
        }
    ],
}

FUNNEL_REQUEST: dict[str, Any] = {
    "steps": [
        {"event": "Product Viewed"},
        {"event": "Checkout Started"},
        {"event": "Order Completed", "filters": [{"property": "revenue", "op": "gt", "value": 0}]},
    ],
    "from": "2025-03-01T00:00:00Z",
    "to": "2025-03-08T00:00:00Z",
    "window_seconds": 3600,
    "breakdown": None,
}
FUNNEL_RESULT: dict[str, Any] = {
    "window_seconds": 3600,
    "groups": [
        {
            "breakdown": None,
            "steps": [
                {
                    "step": 1,
                    "event": "Product Viewed",
                    "users": 1000,
                    "conversion_from_previous": 1.0,
                    "conversion_from_start": 1.0,
                    "median_seconds_from_previous": None,
                    "median_seconds_from_start": None,
                },
                {
                    "step": 2,
                    "event": "Checkout Started",
                    "users": 400,
                    "conversion_from_previous": 0.4,
                    "conversion_from_start": 0.4,
                    "median_seconds_from_previous": 95.0,
                    "median_seconds_from_start": 95.0,
                },
                {
                    "step": 3,
                    "event": "Order Completed",
                    "users": 300,
                    "conversion_from_previous": 0.75,
                    "conversion_from_start": 0.3,
                    "median_seconds_from_previous": 210.0,
                    "median_seconds_from_start": 320.0,
                },
            ],
        }
    ],
}

RETENTION_REQUEST: dict[str, Any] = {
    "cohort_event": "Signed Up",
    "return_event": "Product Viewed",
    "from": "2025-03-01T00:00:00Z",
    "to": "2025-03-08T00:00:00Z",
    "period": "day",
    "periods": 7,
}
RETENTION_RESULT: dict[str, Any] = {
    "period": "day",
    "cohorts": [
        {
            "cohort": "2025-03-01T00:00:00Z",
            "users": 120,
            "returned": [120, 54, 40, 33, 30, 28, 25, 24],
            "rates": [1.0, 0.45, 0.333, 0.275, 0.25, 0.233, 0.208, 0.2],
        }
    ],
}

ALERT_EVENT: dict[str, Any] = {
    "transition_id": "4b0c3c1e-0f7a-4c57-9d7c-3c1f0c7e8b1a",
    "rule_id": "checkout-drop",
    "episode_id": "checkout-drop:2025-03-01T10:04:00Z",
    "from_state": "pending",
    "to_state": "firing",
    "at": "2025-03-01T10:05:00Z",
    "value": 0.041,
    "threshold": 0.05,
    "severity": "critical",
    "message": "Checkout conversion 4.1 % is below 5 %",
}

FEATURE_INPUT: dict[str, Any] = {
    "id": "one-page-checkout",
    "description": "The one-page checkout",
    "value_type": "boolean",
    "default_value": False,
    "environments": {
        "production": {
            "enabled": True,
            "rules": [
                {
                    "type": "force",
                    "id": "staff",
                    "condition": {"email": {"$regex": "@example\\.com$"}},
                    "value": True,
                },
                {
                    "type": "rollout",
                    "id": "ramp",
                    "value": True,
                    "coverage": 0.05,
                    "ramp": [
                        {"at": "2025-03-02T09:00:00Z", "coverage": 0.25},
                        {"at": "2025-03-03T09:00:00Z", "coverage": 1.0},
                    ],
                },
            ],
        },
        "staging": {"enabled": True, "rules": [{"type": "force", "id": "all", "value": True}]},
    },
    "comment": "five per cent first",
}
FEATURE: dict[str, Any] = FEATURE_INPUT | {
    "project_id": "shop",
    "kind": "feature",
    "version": 1,
    "created_at": "2025-03-01T10:00:00Z",
    "updated_at": "2025-03-01T10:00:00Z",
    "updated_by": "ops",
}
FEATURE_REVISION: dict[str, Any] = {
    "id": "one-page-checkout@1",
    "project_id": "shop",
    "kind": "feature_revision",
    "feature": "one-page-checkout",
    "version": 1,
    "document": FEATURE,
    "changes": ["created"],
    "at": "2025-03-01T10:00:00Z",
    "by": "ops",
    "comment": "five per cent first",
}


OUTCOME_INPUT: dict[str, Any] = {
    "id": "more-buyers",
    "name": "More visitors buy",
    "metric": "checkout-conversion",
    "direction": "increase",
    "target": 0.4,
    "start_date": "2025-03-01",
    "target_date": "2025-06-30",
    "owner": "Checkout team",
    "why": "Most visitors who start a checkout leave before paying.",
}
OUTCOME: dict[str, Any] = {
    "kind": "outcome",
    "project_id": "shop",
    "baseline": None,
} | OUTCOME_INPUT
SURVEY_INPUT: dict[str, Any] = {
    "id": "nps",
    "name": "Would you recommend us?",
    "survey_kind": "nps",
    "question": "How likely are you to recommend the shop to a friend?",
}
SURVEY: dict[str, Any] = {
    "kind": "survey",
    "project_id": "shop",
    "scale_min": 0,
    "scale_max": 10,
    "satisfied_from": 4,
} | SURVEY_INPUT
