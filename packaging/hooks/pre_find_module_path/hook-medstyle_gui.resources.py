"""PyInstaller pre-find-module-path hook: where ``medstyle_gui.resources`` really is.

pyproject's ``package-dir`` installs the repository's top-level ``resources/`` as the
package ``medstyle_gui.resources``. PyInstaller's module graph only looks for a
subpackage inside its parent's folder (``medstyle_gui/``), where an editable install or
a build from the checkout has no ``resources/``. Ask the running Python (whose import
system knows the mapping) instead, and search the folder that holds the package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PyInstaller.depend.imphookapi import PreFindModulePathAPI


def pre_find_module_path(api: PreFindModulePathAPI) -> None:
    """Point the search for ``medstyle_gui.resources`` at the folder that holds it."""
    spec = importlib.util.find_spec("medstyle_gui.resources")
    if spec is not None and spec.origin:
        # .../resources/__init__.py -> search .../ for a package named "resources"
        api.search_dirs = [str(Path(spec.origin).resolve().parent.parent)]
