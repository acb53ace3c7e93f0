"""The executor contract, run against SandboxExecutor (bubblewrap): every job of the suite runs sandboxed."""

from __future__ import annotations

from pathlib import Path

import pytest

from aicd.executors.sandbox import SandboxExecutor, probe

from .contract import ExecutorContract, ExecutorFactory

PROBE = probe()
pytestmark = pytest.mark.skipif(not PROBE.ok, reason=PROBE.reason)


class TestSandboxExecutorContract(ExecutorContract):
    inherits_runner_environment = False  # a sandboxed job starts from a clean environment

    @pytest.fixture
    def make_executor(self) -> ExecutorFactory:
        def factory(project: Path, home: Path) -> SandboxExecutor:
            return SandboxExecutor(project, home)

        return factory
