"""The executor contract, run against LocalExecutor."""

from __future__ import annotations

from pathlib import Path

import pytest

from aicd.executors.local import LocalExecutor

from .contract import ExecutorContract, ExecutorFactory


class TestLocalExecutorContract(ExecutorContract):
    @pytest.fixture
    def make_executor(self) -> ExecutorFactory:
        def factory(project: Path, home: Path) -> LocalExecutor:
            return LocalExecutor(project, home)

        return factory
