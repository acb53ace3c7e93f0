"""The demo's Git repository: a copy of the example AI service, and the commits the story needs.

The example (examples/iris-service in the source tree) ships inside the package as
aicd/_examples/iris-service; an editable install finds it there too (a symlink), and a source
checkout without it falls back to the repository's examples/ folder.
"""

from __future__ import annotations

import importlib.resources
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aicd.errors import AicdError, ConfigError, GitError

EXAMPLE_NAME = "iris-service"
AUTHOR_NAME = "aicd demo"
AUTHOR_EMAIL = "demo@aicd.invalid"
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".aicd", "__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache", ".mypy_cache",
    "model", "metrics.json", "metrics.txt", "report.xml", "gate-report.json", "registered.json",
)  # fmt: skip


@dataclass(frozen=True)
class Commit:
    sha: str
    title: str

    @property
    def short(self) -> str:
        return self.sha[:8]


def example_dir() -> Path:
    """The example service's folder: the packaged copy, else the source tree's examples/."""
    candidates: list[Path] = []
    packaged = importlib.resources.files("aicd") / "_examples" / EXAMPLE_NAME
    if isinstance(packaged, Path):
        candidates.append(packaged)
    candidates.append(Path(__file__).resolve().parents[3] / "examples" / EXAMPLE_NAME)
    for candidate in candidates:
        if (candidate / ".gitlab-ci.yml").is_file() and (candidate / "aicd.yml").is_file():
            return candidate
    raise ConfigError(
        f"the example service {EXAMPLE_NAME} is missing from this installation (looked in "
        f"{', '.join(str(c) for c in candidates)}); reinstall aicd (`pip install --force-reinstall aicd`)"
    )


def git_env(base: Mapping[str, str]) -> dict[str, str]:
    """`base` without the variables that would point git elsewhere, with the demo's author."""
    env = {k: v for k, v in base.items() if not k.startswith("GIT_")}
    env.update(
        GIT_AUTHOR_NAME=AUTHOR_NAME,
        GIT_AUTHOR_EMAIL=AUTHOR_EMAIL,
        GIT_COMMITTER_NAME=AUTHOR_NAME,
        GIT_COMMITTER_EMAIL=AUTHOR_EMAIL,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
    )
    return env


class DemoRepo:
    """The demo's repository at `path`; every change is one real commit on `main`."""

    def __init__(self, path: Path, env: Mapping[str, str]) -> None:
        self.path = path
        self.env = git_env(env)

    def git(self, *args: str) -> str:
        # No user configuration: no signing, hooks or templates of the person running the demo.
        argv = ["git", "-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null", *args]
        try:
            done = subprocess.run(
                argv, cwd=self.path, env=self.env, capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise GitError(f"git {args[0]} failed in {self.path}: {exc}") from None
        if done.returncode != 0:
            raise GitError(f"git {' '.join(args)} failed in {self.path}: {done.stderr.strip()}")
        return done.stdout.strip()

    @classmethod
    def create(cls, path: Path, env: Mapping[str, str]) -> tuple[DemoRepo, Commit]:
        """Copy the example into `path` (new) and commit it as the first commit of `main`."""
        if shutil.which("git") is None:
            raise ConfigError("aicd demo needs git on PATH (install git)")
        shutil.copytree(example_dir(), path, ignore=COPY_IGNORE)
        repo = cls(path, env)
        repo.git("init", "-q", "--template=", "-b", "main")
        return repo, repo.commit("iris service: model, service, pipeline")

    def commit(self, title: str) -> Commit:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", title)
        return Commit(self.git("rev-parse", "HEAD"), title)

    def head(self) -> Commit:
        return Commit(self.git("rev-parse", "HEAD"), self.git("log", "-1", "--format=%s"))

    def edit(self, name: str, pattern: str, replacement: str) -> None:
        """Replace the one line matching `pattern` in file `name` (an error if none does)."""
        path = self.path / name
        text = path.read_text()
        new, count = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
        if count != 1:
            raise AicdError(f"demo: the example's {name} has no line matching {pattern!r} to change")
        path.write_text(new)

    # -- the story's changes ---------------------------------------------------------------------

    def better_model(self) -> Commit:
        """A second version: weaker regularisation (C 1.0 -> 5.0), same accuracy, lower log loss."""
        self.edit("train.py", r"^C = [0-9.]+$", "C = 5.0")
        return self.commit("train: C = 5.0 (log loss 0.19 -> 0.10 on the held-out rows)")

    def worse_model(self) -> Commit:
        """Train on the sepal width only (the example's IRIS_WORSE_MODEL knob, committed)."""
        path = self.path / ".gitlab-ci.yml"
        text = path.read_text()
        if re.search(r"^variables:", text, flags=re.MULTILINE):
            raise AicdError(
                "demo: the example's .gitlab-ci.yml already has `variables:`; cannot add the knob"
            )
        path.write_text(
            text.rstrip("\n") + '\n\nvariables:\n  IRIS_WORSE_MODEL: "1"  # train on the sepal width only\n'
        )
        return self.commit("train on the sepal width only (IRIS_WORSE_MODEL=1)")

    def faulty_service(self, fault_rate: str) -> Commit:
        """Undo the worse model, then ship a service whose /predict fails `fault_rate` of the time,
        in a hurry: without the shadow phase (which would catch it before any user saw it), so
        the canary meets users and is rolled back."""
        self.git("revert", "--no-edit", "HEAD")
        self.edit(
            "aicd.yml",
            r"^(\s*IRIS_FAULT_RATE:\s*)\"?[0-9.]+\"?",
            rf'\g<1>"{fault_rate}"',
        )
        self.edit("aicd.yml", r"^[ \t]*- shadow: .*\n", "")
        return self.commit(
            f"service: IRIS_FAULT_RATE {fault_rate} (a bad release: some /predict calls fail), "
            "shipped without the shadow phase"
        )
