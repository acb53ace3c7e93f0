"""The package layout the design map promises: `aicd.core` holds only what the doors call."""

from __future__ import annotations

import ast
from pathlib import Path

import aicd

SRC = Path(aicd.__file__).parent


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_demo_is_its_own_package_not_part_of_the_core() -> None:
    assert not sorted(p.name for p in (SRC / "core").glob("demo*"))
    assert (SRC / "demo" / "__init__.py").is_file()
    assert (SRC / "demo" / "story.py").is_file()


def test_only_the_demo_command_imports_the_demo() -> None:
    importers = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if "demo" not in path.relative_to(SRC).parts[:1]
        and any(name == "aicd.demo" or name.startswith("aicd.demo.") for name in _imports(path))
    )
    assert importers == ["cli/demo_cmd.py"]


DOORS = ("aicd.server", "aicd.web", "aicd.cli")
BELOW_THE_DOORS = (
    "core",
    "triggers",
    "engine",
    "executors",
    "store",
    "pipeline",
    "delivery",
    "reliability",
    "deploy",
    "workers",
)


def _is_door(name: str) -> bool:
    return any(name == door or name.startswith(door + ".") for door in DOORS)


def test_nothing_below_the_doors_imports_them_not_even_for_type_checking() -> None:
    """The dispatcher and the poller get what they need from the server through their own Protocols
    (core/dispatch_deps.py, triggers/poller.py): no import of aicd.server, even under TYPE_CHECKING."""
    importers = sorted(
        f"{path.relative_to(SRC)}: {name}"
        for package in BELOW_THE_DOORS
        for path in (SRC / package).rglob("*.py")
        for name in _imports(path)
        if _is_door(name)
    )
    assert importers == []


def test_the_server_state_satisfies_the_dispatcher_and_poller_interfaces() -> None:
    """Structural typing only: checked by mypy (app.py passes a ServerState); here, the member names."""
    from aicd.core.dispatch_deps import DispatchDeps, DispatchSettings
    from aicd.server.settings import ServerSettings
    from aicd.server.state import ServerState
    from aicd.triggers.poller import PollerDeps

    fields = set(ServerState.__dataclass_fields__)
    for protocol in (DispatchDeps, PollerDeps):
        wanted = {name for name in vars(protocol) if not name.startswith("_")}
        assert wanted <= fields, protocol
    wanted = {name for name in vars(DispatchSettings) if not name.startswith("_")}
    assert wanted <= set(ServerSettings.__dataclass_fields__)
