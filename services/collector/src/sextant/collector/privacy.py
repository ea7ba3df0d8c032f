"""A project's personal-data rules, applied to each event before it is written anywhere."""

from __future__ import annotations

from typing import Any

from sextant.core.logging import get_logger
from sextant.core.secrets import SecretBox
from sextant.schemas.config import Project
from sextant.schemas.privacy import PiiAction, redact

log = get_logger(__name__)
HASH_PURPOSE = "sextant/pii-hash/v1"


class Privacy:
    """Redacts events by their project's ``pii`` rules, hashing under the master key."""

    def __init__(self, box: SecretBox | None) -> None:
        self._key = box.derive(HASH_PURPOSE) if box is not None else None
        self._warned: set[str] = set()

    def redact(self, project: Project, event: Any) -> Any:
        """``event`` as the project allows it to be kept (unchanged if not a JSON object)."""
        if not project.pii or not isinstance(event, dict):
            return event
        hashes = any(rule.action is PiiAction.HASH for rule in project.pii)
        if self._key is None and hashes and project.id not in self._warned:
            self._warned.add(project.id)
            log.warning(
                "no master key (SEXTANT_SECRET_KEY): properties to hash are dropped",
                project=project.id,
            )
        return redact(event, project.pii, self._key, project.id)
