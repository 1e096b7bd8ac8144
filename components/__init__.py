"""The stack's components, grouped by what they serve (docs/architecture.md).

A stack deployed before the grouping holds its two dynamic providers in state pickled by reference
under their old module paths; `pulumi refresh` and `pulumi destroy` unpickle those before any new
program runs. The finder below answers the two old paths with the modules that now hold the
classes, so such a stack refreshes and destroys as before; the next `pulumi up` that updates the
pool or the automation stores the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Optional, Sequence

MOVED_PROVIDER_MODULES = {
    "components.work_pool": "components.prefect.work_pool",
    "components.run_recovery": "components.prefect.stuck_run_automation",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target: Optional[ModuleType] = None
                  ) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname not in MOVED_PROVIDER_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(MOVED_PROVIDER_MODULES[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        pass


if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
