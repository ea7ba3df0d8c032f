"""A project's personal-data rules, applied to each event before it is written anywhere."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sextant.core.config_plane import ConfigState
from sextant.core.logging import get_logger
from sextant.core.secrets import SecretBox
from sextant.schemas.config import ConfigKind, PersonDeletion, Project, person_hash
from sextant.schemas.privacy import PiiAction, redact

log = get_logger(__name__)
HASH_PURPOSE = "sextant/pii-hash/v1"


class Privacy:
    """Redacts events by their project's ``pii`` rules, hashing under the master key, and
    knows whose events are not to be kept (persons deleted, while their suppression lasts)."""

    def __init__(self, box: SecretBox | None, state: ConfigState | None = None) -> None:
        self._key = box.derive(HASH_PURPOSE) if box is not None else None
        self._warned: set[str] = set()
        self._state = state
        self._suppressed: dict[str, dict[str, datetime]] = {}
        if state is not None:
            state.subscribe(self._on_change)

    def _on_change(self, key: str, _document: object) -> None:
        if not key.startswith(f"{ConfigKind.PERSON_DELETION.value}:") or self._state is None:
            return
        suppressed: dict[str, dict[str, datetime]] = {}
        for request in self._state.of_kind(PersonDeletion):
            hashes = suppressed.setdefault(request.project_id, {})
            for digest in request.id_hashes:
                hashes[digest] = max(
                    hashes.get(digest, request.suppress_until), request.suppress_until
                )
        self._suppressed = suppressed

    def suppresses(self, project_id: str) -> bool:
        """Whether some person of the project is to be forgotten (else :meth:`suppressed`
        is false for every event, and need not be asked)."""
        return bool(self._suppressed.get(project_id))

    def suppressed(self, project_id: str, event: Any, now: datetime) -> bool:
        """Whether ``event`` names (as userId or anonymousId) a person whose events are not
        to be kept now."""
        hashes = self._suppressed.get(project_id)
        if not hashes or not isinstance(event, dict):
            return False
        for field in ("userId", "anonymousId"):
            value = event.get(field)
            if isinstance(value, str | int) and not isinstance(value, bool):
                until = hashes.get(person_hash(project_id, str(value)))
                if until is not None and now < until:
                    return True
        return False

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
