"""Every config document as one YAML file, and back (``sextant config export`` / ``restore``).

The export holds the documents as the config topic holds them: API keys as SHA-256 hashes
(never their secrets), and every secret (``SealedSecret`` fields: webhook signing secrets,
payload keys) sealed under the master key. A secret an older writer left in clear is sealed on
the way out, so an export never shows one. Restoring needs the same master key (or a list that
contains it): each sealed value is opened once to check, and a file with a value no key opens is
refused before anything is written.

```yaml
kind: sextant-config-export
version: 1
exported_at: 2026-01-01T00:00:00Z
documents:
  - {kind: project, id: demo, project_id: demo, name: Demo shop, ...}
  - {kind: api_key, id: web, project_id: demo, key_kind: write, key_hash: ..., ...}
```
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from sextant.core.secrets import (
    FieldPath,
    MissingSecretKey,
    SecretBox,
    map_secrets,
    seal_documents,
)
from sextant.schemas.config import CONFIG_DOCUMENT, ConfigDocument

__all__ = ["EXPORT_KIND", "ConfigExport", "dump_export", "load_export"]

EXPORT_KIND = "sextant-config-export"


class ConfigExport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(default=EXPORT_KIND, pattern=f"^{EXPORT_KIND}$")
    version: int = Field(default=1, ge=1, le=1)
    exported_at: datetime
    documents: list[dict[str, Any]]

    def parsed(self) -> list[ConfigDocument]:
        """The documents, each validated as the config topic's readers validate it."""
        return [CONFIG_DOCUMENT.validate_python(raw) for raw in self.documents]


def dump_export(
    documents: Iterable[ConfigDocument], box: SecretBox | None, now: datetime | None = None
) -> str:
    """The YAML of ``documents``, sorted by config key, every secret sealed (a clear one is
    sealed with ``box``: ``MissingSecretKey`` without one)."""
    sealed = sorted(seal_documents(documents, box), key=lambda d: d.config_key())
    export = ConfigExport(
        exported_at=now or datetime.now(UTC),
        documents=[d.model_dump(mode="json") for d in sealed],
    )
    return yaml.safe_dump(export.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def load_export(text: str, box: SecretBox | None) -> list[ConfigDocument]:
    """The documents of an export, checked: each valid, each sealed secret opened by ``box``
    (``UnreadableSecret`` names the field otherwise; ``MissingSecretKey`` when a document has
    a secret and there is no key)."""
    export = ConfigExport.model_validate(yaml.safe_load(text) or {})
    documents = export.parsed()
    if box is None and any(_secrets_of(d) for d in documents):
        raise MissingSecretKey("restoring documents with sealed secrets")
    return seal_documents(documents, box)


def _secrets_of(document: ConfigDocument) -> list[str]:
    found: list[str] = []

    def note(path: FieldPath, value: str) -> str:
        if value:
            found.append(".".join(str(p) for p in path))
        return value

    map_secrets(document, note)
    return found
