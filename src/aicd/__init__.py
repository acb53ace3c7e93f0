"""aicd: continuous delivery for AI services."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing itself is not imported here (see below)
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"


class _InstallWithDataclasses:
    """Installs `aicd.dataclass_cache` right after `dataclasses` is imported, before any of aicd's
    dataclasses is made. Importing `aicd` itself then loads nothing more: the `aicd` program's
    hand-over to the run daemon (`aicd.cli.daemon.client`) needs no dataclass, pathlib or re."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "dataclasses":
            return None
        sys.meta_path.remove(self)
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        loader = None if spec is None else spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then_install(module: Any) -> None:
            exec_module(module)
            from aicd import dataclass_cache

            dataclass_cache.install()

        loader.exec_module = exec_then_install  # type: ignore[method-assign]
        return spec


# before any of aicd's dataclasses is made: their methods' compiled code is kept between processes
if "dataclasses" in sys.modules:
    from aicd import dataclass_cache as _dataclass_cache

    _dataclass_cache.install()
else:
    sys.meta_path.insert(0, _InstallWithDataclasses())
