"""What a public write key may read: its project's assignment definitions, and the variants
they give a unit.

Write keys sit in pages, so this is all they read: how units are assigned (never a metric, a
result, an alert or a person). The variants come from :func:`sextant.schemas.assignment.assign`,
the one implementation every SDK uses, so a unit gets the same variant here as from any SDK.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import orjson

from sextant.core.config_plane import ConfigState
from sextant.schemas.assignment import running
from sextant.schemas.experiments import ASSIGNMENT_FIELDS, Variant, variant_of


def public_definitions(state: ConfigState, project_id: str) -> tuple[bytes, str]:
    """The project's experiments as SDKs read them (a JSON list, by id) and its ETag."""
    experiments = sorted(state.experiments(project_id), key=lambda e: e.id)
    body = orjson.dumps(
        [e.model_dump(mode="json", include=set(ASSIGNMENT_FIELDS)) for e in experiments]
    )
    return body, f'"{hashlib.sha256(body).hexdigest()[:32]}"'


def variants_for(
    state: ConfigState, project_id: str, unit_id: str, now: datetime
) -> dict[str, Variant | None]:
    """Every running experiment of the project, with the unit's variant (None: left out)."""
    return {
        experiment.id: variant_of(experiment, unit_id, now)
        for experiment in sorted(state.experiments(project_id), key=lambda e: e.id)
        if running(experiment.start, experiment.stop, now)
    }


def posthog_flags(
    variants: dict[str, Variant | None],
    features: dict[str, tuple[bool | str, Any]],
    *,
    detailed: bool,
) -> dict[str, Any]:
    """PostHog's flags answer: each running experiment as a multivariate flag, and each
    feature (key → (flag value, payload); a feature's key wins over an experiment's).

    ``detailed`` adds the ``flags`` map of ``/flags/?v=2``; ``featureFlags`` (the v1 and
    ``/decide/`` shape) is always there, so any posthog client version reads it.
    """
    values: dict[str, bool | str] = {key: v.id if v else False for key, v in variants.items()}
    values |= {key: value for key, (value, _) in features.items()}
    payloads = {
        key: orjson.dumps(payload).decode()
        for key, (_, payload) in features.items()
        if payload is not None
    }
    answer: dict[str, Any] = {
        "featureFlags": values,
        "featureFlagPayloads": payloads,
        "errorsWhileComputingFlags": False,
        "quotaLimited": [],
    }
    if detailed:
        details = {key: _flag_detail(key, v) for key, v in variants.items()}
        details |= {
            key: _feature_detail(key, value, payload) for key, (value, payload) in features.items()
        }
        answer["flags"] = details
    return answer


def _feature_detail(key: str, value: bool | str, payload: Any) -> dict[str, Any]:
    return {
        "key": key,
        "enabled": value is not False,
        "variant": value if isinstance(value, str) else None,
        "reason": {
            "code": "condition_match" if value is not False else "no_condition_match",
            "condition_index": 0,
            "description": "evaluated from the feature's rules",
        },
        "metadata": {
            "id": None,
            "version": None,
            "description": None,
            "payload": None if payload is None else orjson.dumps(payload).decode(),
        },
    }


def _flag_detail(key: str, variant: Variant | None) -> dict[str, Any]:
    return {
        "key": key,
        "enabled": variant is not None,
        "variant": variant.id if variant else None,
        "reason": {
            "code": "condition_match" if variant else "out_of_rollout_bound",
            "condition_index": 0,
            "description": "assigned by the experiment's hash"
            if variant
            else "outside the experiment's coverage",
        },
        "metadata": {"id": None, "version": None, "description": None, "payload": None},
    }


def posthog_remote_config(token: str, has_flags: bool) -> dict[str, Any]:
    """posthog-js's remote config: gzip bodies, no recording, surveys or site apps (Sextant
    does not take them, so the client never sends them)."""
    return {
        "token": token,
        "supportedCompression": ["gzip", "gzip-js"],
        "hasFeatureFlags": has_flags,
        "analytics": {"endpoint": "/e/"},
        "elementsChainAsString": True,
        "sessionRecording": False,
        "heatmaps": False,
        "surveys": False,
        "productTours": False,
        "captureDeadClicks": False,
        "capturePerformance": False,
        "autocaptureExceptions": False,
        "errorTracking": {"autocaptureExceptions": False},
        "logs": False,
        "defaultIdentifiedOnly": True,
        "siteApps": [],
    }
