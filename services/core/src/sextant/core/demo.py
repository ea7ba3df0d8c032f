"""The demo keys are public: they must never open a deployment that is not a demo.

The secrets of ``deploy/config/demo.yaml`` sit in Sextant's public repository and ``make run``
prints them. A part therefore refuses to start while one of them is *active* (a key document
on the config plane, not revoked, whose hash is the hash of one of those secrets), unless
``SEXTANT_DEMO=true`` says that this is a demo. Outside a demo, a demo key applied after the
start never authenticates either (:meth:`ConfigState.refuse_keys`).

Only the hashes are kept here, so the parts' images need not carry the demo file; a unit
test keeps them equal to the file's secrets.
"""

from __future__ import annotations

from sextant.core.config_plane import ConfigFollower, ConfigState
from sextant.core.logging import get_logger
from sextant.core.settings import KafkaSection
from sextant.schemas.config import ApiKey, ConfigDocument

__all__ = [
    "DEMO_KEY_HASHES",
    "DemoKeysActive",
    "active_demo_keys",
    "check_demo_keys_once",
    "guard_demo_keys",
]

log = get_logger(__name__)

DEMO_KEY_HASHES = frozenset(
    {
        "b7140a0d6d1bd634a25eb9d3d930bbf40d339333cdf31d6aa42202dcc469d643",  # demo-admin
        "b49736eb6653eb4687a926d76605a078203f56c55a08efaf63843bfdee1e0d9c",  # demo-write
        "c7fb19ded8d3a13d245c54b88ac757261475e5d6a1bc9be1724b34f6427db834",  # demo-read
    }
)
"""SHA-256 of the key secrets in ``deploy/config/demo.yaml``."""


class DemoKeysActive(RuntimeError):  # noqa: N818 - the name says what was found
    """A part will not start: public demo keys are active and ``SEXTANT_DEMO`` is not set."""

    def __init__(self, part: str, keys: list[ApiKey]) -> None:
        self.keys = keys
        names = ", ".join(sorted(k.config_key() for k in keys))
        super().__init__(
            f"the {part} refuses to start: the demo keys of deploy/config/demo.yaml ({names}) "
            "are active on this config topic. Their secrets are public (Sextant's repository "
            "prints them), so anyone could use them. Revoke them with `sextant config "
            "revoke-demo` (and make an admin key of your own with `sextant bootstrap`), or, "
            "for a local demo that nobody else can reach, set SEXTANT_DEMO=true."
        )


def _is_active_demo_key(document: ConfigDocument | None) -> bool:
    return (
        isinstance(document, ApiKey)
        and not document.revoked
        and document.key_hash in DEMO_KEY_HASHES
    )


def active_demo_keys(state: ConfigState) -> list[ApiKey]:
    """The demo keys that would authenticate if nothing refused them."""
    return [key for key in state.of_kind(ApiKey) if _is_active_demo_key(key)]


def guard_demo_keys(state: ConfigState, *, demo: bool, part: str) -> None:
    """Call once the config is read: raise :class:`DemoKeysActive` (after logging why) when
    demo keys are active outside a demo; otherwise refuse them from now on."""
    if demo:
        log.warning(
            "demo mode (SEXTANT_DEMO=true): the public demo keys are accepted; "
            "do not expose this deployment"
        )
        return
    active = active_demo_keys(state)
    if active:
        error = DemoKeysActive(part, active)
        log.error(str(error))
        raise error
    state.refuse_keys(DEMO_KEY_HASHES)

    def warn(key: str, document: ConfigDocument | None) -> None:
        if _is_active_demo_key(document):
            log.error("a public demo key was applied; it is refused here (not a demo)", key=key)

    state.subscribe(warn)


def check_demo_keys_once(settings: KafkaSection, *, demo: bool, part: str, wait_s: float) -> None:
    """:func:`guard_demo_keys` for a part that does not follow the config plane (the sink
    on its own): read the config topic once, then stop reading it."""
    if demo:
        guard_demo_keys(ConfigState(), demo=True, part=part)
        return
    follower = ConfigFollower(settings).start()
    try:
        if not follower.wait_caught_up(wait_s):
            log.warning("config topic not read to its end; demo keys not checked")
            return
        guard_demo_keys(follower.state, demo=False, part=part)
    finally:
        follower.stop()
