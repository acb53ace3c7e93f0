"""Job artifacts: keeping them after a job, restoring them before a later one.

Kept under ``run_dir/artifacts/<job_id>/`` with their workspace-relative
paths, so a dependent job gets them by copying that folder into its
workspace. Report files (``artifacts:reports``) are kept apart under
``run_dir/reports/<job_id>/``: as on GitLab, they are read by aicd but not
handed to dependent jobs (a dotenv file reaches them as variables only).

What is kept follows GitLab: ``paths`` (variables expanded, globs with
``*``, ``**``, ``?``; a directory brings its whole tree), plus every
untracked file with ``untracked: true``, minus ``exclude`` matches
(not recursive: ``dir/**`` excludes what is under ``dir``). A path matching
nothing gives a warning, never a failure; a path outside the workspace is
refused with a warning. A symbolic link is kept as the file it points to when
that is a file inside the workspace, and left out with a warning otherwise (out
of the workspace, dangling, or a directory), so the archive holds what the log
counts. Functions here are synchronous (run them in a thread)
and return the info lines to show.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aicd.executors import globbing
from aicd.executors.base import OutcomeStatus
from aicd.executors.workspace import copy_tree, remove_tree
from aicd.pipeline.ir import Artifacts, ArtifactsWhen, Reports

Expand = Callable[[str], str]


def wanted(when: ArtifactsWhen, status: OutcomeStatus) -> bool:
    """Whether ``when`` (artifacts or cache) applies to a job that ended with ``status``."""
    if status == "canceled":
        return False
    if when == "always":
        return True
    return (when == "on_success") == (status == "success")


def artifacts_dir(run_dir: Path, job_id: int) -> Path:
    return run_dir / "artifacts" / str(job_id)


def reports_dir(run_dir: Path, job_id: int) -> Path:
    return run_dir / "reports" / str(job_id)


def save_artifacts(
    artifacts: Artifacts,
    workspace: Path,
    dest: Path,
    expand: Expand,
    tracked: frozenset[str],
) -> tuple[int, list[str]]:
    """Copy the job's artifacts to ``dest``; returns (files kept, info lines)."""
    info: list[str] = []
    paths = [expand(p) for p in artifacts.paths]
    sel = globbing.select(workspace, paths, info.append)
    if artifacts.untracked:
        globbing.untracked(workspace, tracked, sel)
    excludes = [r for r in (globbing.normalise(str(workspace), expand(e)) for e in artifacts.exclude) if r]
    sel.exclude(excludes)
    follow, left_out = globbing.resolve_links(workspace, sel)
    info += left_out
    if not sel.entries:
        if paths or artifacts.untracked:
            info.append("No artifacts to keep")
        return 0, info
    if dest.exists():
        remove_tree(dest)
    dest.mkdir(parents=True)
    count = globbing.copy_selection(workspace, sel, dest, follow)
    info.append(f"Kept artifacts: {count} file{'s' if count != 1 else ''}")
    return count, info


@dataclass
class ReportFiles:
    """Report files found, by type; each as (workspace-relative name, stored path)."""

    by_type: dict[str, list[tuple[str, Path]]] = field(default_factory=dict)

    def of(self, kind: str) -> list[tuple[str, Path]]:
        return self.by_type.get(kind, [])


def save_reports(
    reports: Reports, workspace: Path, dest: Path, expand: Expand
) -> tuple[ReportFiles, list[str]]:
    """Copy the report files to ``dest``; returns them by type and info lines."""
    info: list[str] = []
    found = ReportFiles()
    kinds: Sequence[tuple[str, tuple[str, ...]]] = (
        ("dotenv", reports.dotenv),
        ("junit", reports.junit),
        ("metrics", reports.metrics),
        ("other", reports.other),
    )
    for kind, patterns in kinds:
        if not patterns:
            continue
        sel = globbing.select(workspace, [expand(p) for p in patterns], info.append)
        follow, left_out = globbing.resolve_links(workspace, sel)
        info += left_out
        files = [rel for rel, is_dir in sel.entries.items() if not is_dir]
        # aicd reads reports (and serves JUnit ones): a link could name any file of the host
        links = [rel for rel in files if (workspace / rel).is_symlink()]
        for rel in links:
            info.append(f"WARNING: {rel}: a symbolic link; a {kind} report must be a file; not kept")
        files = [rel for rel in files if rel not in links]
        if not files:
            continue
        only = globbing.Selection({rel: False for rel in files})
        globbing.copy_selection(workspace, only, dest, follow)
        found.by_type[kind] = [(rel, dest / rel) for rel in files]
    return found, info


def restore_artifacts(sources: Sequence[tuple[str, Path]], workspace: Path) -> list[str]:
    """Copy each (job name, stored folder) into the workspace, in order (later ones win)."""
    info: list[str] = []
    for name, folder in sources:
        if not folder.is_dir():
            continue
        count = copy_tree(folder, workspace)
        info.append(f"Restored artifacts of {name}: {count} file{'s' if count != 1 else ''}")
    return info
