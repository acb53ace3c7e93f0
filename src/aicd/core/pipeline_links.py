"""Parent and child pipelines: which trigger job made which child, kept beside each run.

A child pipeline's run folder holds ``parent.json`` (its parent pipeline and trigger job); the
parent's holds ``children.json`` (one entry per child its trigger jobs made, retries included,
oldest first). Written by :class:`aicd.core.child_pipelines.ChildRuns` for `aicd run` and the
server alike; the API's pipeline JSON shows both (``parent``, ``children``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

PARENT_FILE = "parent.json"
CHILDREN_FILE = "children.json"


@dataclass(frozen=True)
class PipelineLink:
    """A parent or child pipeline of a pipeline, through its trigger job."""

    pipeline_id: int  # the other pipeline: the parent (in parent.json) or the child (in children.json)
    job_id: int  # the trigger job
    job: str  # its name


def record_child(
    parent_run_dir: Path, child_run_dir: Path, link_to_child: PipelineLink, parent_id: int
) -> None:
    """Write both sides of a new parent-child link."""
    child_run_dir.mkdir(parents=True, exist_ok=True)
    parent = PipelineLink(parent_id, link_to_child.job_id, link_to_child.job)
    _write(child_run_dir / PARENT_FILE, asdict(parent))
    children = [asdict(c) for c in children_of(parent_run_dir)]
    children.append(asdict(link_to_child))
    _write(parent_run_dir / CHILDREN_FILE, children)


def parent_of(run_dir: Path) -> PipelineLink | None:
    data = _read(run_dir / PARENT_FILE)
    return _link(data) if isinstance(data, dict) else None


def children_of(run_dir: Path) -> list[PipelineLink]:
    data = _read(run_dir / CHILDREN_FILE)
    if not isinstance(data, list):
        return []
    return [link for link in (_link(d) for d in data if isinstance(d, dict)) if link is not None]


def _link(data: dict[str, object]) -> PipelineLink | None:
    pid, jid, job = data.get("pipeline_id"), data.get("job_id"), data.get("job")
    if isinstance(pid, int) and isinstance(jid, int) and isinstance(job, str):
        return PipelineLink(pid, jid, job)
    return None


def _read(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    scratch.write_text(json.dumps(data), encoding="utf-8")
    os.replace(scratch, path)
