"""The YAML config file format of ``sextant config apply`` and ``deploy/config/*.yaml``.

Keys are given as secrets in the file (so a demo can print them) and become hashed
``ApiKey`` documents; nothing stores a secret.

```yaml
admin_keys: [{id: ops, secret: "..."}]
projects:
  - id: demo
    name: Demo shop
    keys: [{id: web, kind: write, secret: "..."},
           {id: web-flags, kind: client, environment: production, secret: "sdk-..."}]
    metrics: [{id: signups, metric_kind: count, event: Signed Up}]
    experiments: []
    features: [{id: new-checkout, default_value: false, environments: {production: {rules: []}}}]
    alert_rules: []
    tracking_plans: []
    outcomes: [{id: more-buyers, name: More buyers, metric: checkout-conversion,
                target: 0.5, start_date: today-14, target_date: 2026-06-30}]
    surveys: [{id: nps, survey_kind: nps, question: How likely are you to recommend us?}]
```

An outcome's ``start_date`` and ``target_date`` may be written relative to the day the file
is applied: ``today``, ``today-14``, ``today+60``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sextant.schemas.config import (
    ALL_PROJECTS,
    CONFIG_DOCUMENT,
    ApiKey,
    ConfigDocument,
    Identifier,
    KeyKind,
    Project,
    hash_key,
)

_SECTIONS = {
    "metrics": "metric",
    "experiments": "experiment",
    "alert_rules": "alert_rule",
    "tracking_plans": "tracking_plan",
    "features": "feature",
    "outcomes": "outcome",
    "surveys": "survey",
}


class KeySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Identifier
    kind: KeyKind = KeyKind.WRITE
    secret: str = Field(min_length=16)
    name: str = ""
    environment: Identifier | None = None
    """Client keys: the environment whose features the key reads (default production)."""


class ProjectSpec(BaseModel):
    """A project's settings (every field of :class:`Project`, checked by it) and its documents."""

    model_config = ConfigDict(extra="allow")

    id: Identifier
    name: str
    keys: list[KeySpec] = Field(default_factory=list)
    metrics: list[dict[str, Any]] = Field(default_factory=list)
    experiments: list[dict[str, Any]] = Field(default_factory=list)
    alert_rules: list[dict[str, Any]] = Field(default_factory=list)
    tracking_plans: list[dict[str, Any]] = Field(default_factory=list)
    features: list[dict[str, Any]] = Field(default_factory=list)
    """Feature flags; each written gets its next version (an unchanged one is left as is)."""
    outcomes: list[dict[str, Any]] = Field(default_factory=list)
    surveys: list[dict[str, Any]] = Field(default_factory=list)


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    admin_keys: list[KeySpec] = Field(default_factory=list)
    projects: list[ProjectSpec] = Field(default_factory=list)


def _key_document(spec: KeySpec, project_id: str) -> ApiKey:
    return ApiKey(
        id=spec.id,
        project_id=project_id,
        key_kind=spec.kind,
        key_hash=hash_key(spec.secret),
        name=spec.name or spec.id,
        environment=(spec.environment or "production") if spec.kind is KeyKind.CLIENT else None,
    )


_RELATIVE_DATE = re.compile(r"^today(?:([+-])(\d{1,4}))?$")
_DATE_FIELDS = ("start_date", "target_date")


def resolve_dates(raw: dict[str, Any], today: date | None = None) -> dict[str, Any]:
    """An outcome's dates written ``today``, ``today-14`` or ``today+60`` made absolute (UTC),
    so a file (the demo's) can describe outcomes relative to the day it is applied."""
    today = today or datetime.now(UTC).date()
    resolved = dict(raw)
    for name in _DATE_FIELDS:
        match = _RELATIVE_DATE.match(str(raw.get(name, "")))
        if match:
            sign, days = match.groups()
            offset = int(days or 0) * (-1 if sign == "-" else 1)
            resolved[name] = (today + timedelta(days=offset)).isoformat()
    return resolved


def _project_documents(spec: ProjectSpec) -> list[ConfigDocument]:
    settings = {"id": spec.id, "project_id": spec.id, "name": spec.name}
    documents: list[ConfigDocument] = [Project.model_validate(settings | (spec.model_extra or {}))]
    documents += [_key_document(key, spec.id) for key in spec.keys]
    for section, kind in _SECTIONS.items():
        for raw in getattr(spec, section):
            if kind == "outcome":
                raw = resolve_dates(raw)
            body = {"kind": kind, "project_id": spec.id} | raw
            documents.append(CONFIG_DOCUMENT.validate_python(body))
    return documents


def documents_from_file(config: ConfigFile) -> list[ConfigDocument]:
    """Every config document the file describes, projects first."""
    documents: list[ConfigDocument] = [
        _key_document(key.model_copy(update={"kind": KeyKind.ADMIN}), ALL_PROJECTS)
        for key in config.admin_keys
    ]
    for project in config.projects:
        documents += _project_documents(project)
    return documents


def describe_yaml_error(error: yaml.YAMLError) -> str:
    """Where and why a text is not YAML, without quoting it: a config file holds secrets, and
    the parser's own message shows the lines around the fault."""
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(error, "problem", None) or "not valid YAML"
    return f"not YAML{where}: {problem}"


def describe_validation_error(error: ValidationError) -> str:
    """Each fault as ``field: message``, without the values (which may be secrets)."""
    return "\n".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}"
        for e in error.errors(include_input=False, include_url=False)
    )


def load_config_file(path: Path) -> ConfigFile:
    """Parse and validate a config file; a ``pydantic.ValidationError`` names the bad field."""
    return ConfigFile.model_validate(yaml.safe_load(path.read_text()) or {})
