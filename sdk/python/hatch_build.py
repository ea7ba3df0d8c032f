"""Build hook: the modules of ``sextant.schemas`` the SDK runs on go into the SDK's wheel.

The SDK assigns variants with ``sextant.schemas.assignment``, validates events with
``sextant.schemas.events`` and reads experiment definitions into
``sextant.schemas.experiments``. Those files have one source, in ``schemas/``; this hook copies
them into the wheel at the same import path, so ``pip install sextant-sdk`` needs no other
package of the repository (and none of ``sextant-schemas``' heavy dependencies: its other
modules are left out).

- Wheel from the repository: the files are taken from ``../../schemas/src/sextant/schemas``.
- Sdist from the repository: they are stored under ``src/sextant/schemas/``, where the wheel
  built from the sdist finds them as part of the package.
- Editable install (``uv sync`` in the workspace): nothing is added. hatchling would install
  copies into site-packages, where a partial ``sextant/schemas`` package would hide the
  workspace's own ``sextant-schemas`` (editable too) and go stale; the workspace has that
  package installed anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SHARED_MODULES = (
    "__init__.py",
    "assignment.py",
    "conditions.py",
    "events.py",
    "experiments.py",
    "flags.py",
    "py.typed",
)
"""What the SDK imports from ``sextant.schemas``; these import nothing else from it."""


class SharedSchemasHook(BuildHookInterface):
    PLUGIN_NAME = "shared-schemas"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name == "wheel" and version == "editable":
            return
        root = Path(self.root)
        if (root / "src" / "sextant" / "schemas" / "assignment.py").is_file():
            return  # an unpacked sdist: the modules are in src/ already
        source = root.parent.parent / "schemas" / "src" / "sextant" / "schemas"
        missing = [name for name in SHARED_MODULES if not (source / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"sextant-sdk is built from the Sextant repository (sdk/python) or from its sdist; "
                f"{', '.join(missing)} not found in {source}"
            )
        target = "sextant/schemas" if self.target_name == "wheel" else "src/sextant/schemas"
        for name in SHARED_MODULES:
            build_data["force_include"][str(source / name)] = f"{target}/{name}"
