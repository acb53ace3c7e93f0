"""Turning a server project's commit into a pipeline IR, and keeping it for later runs.

The pipeline file is read from the commit's tree (extracted once per commit
under home/sources/<project id>/<sha>), with GitLab's predefined variables for
the ref and the project's variables (decrypted; masked ones stay masked;
protected ones only on the default branch and on tags). The IR is saved to
run_dir/pipeline.json for retry, play and crash recovery *without* secret
values: project variables are read again for each run, and masked variables
given for the run are kept encrypted in run_dir/secret-variables. Who
started the pipeline and the commit before a push (`Trigger`) are kept in
run_dir/trigger.json, for a pipeline prepared again after a crash.

URLs: `CI_SERVER_URL` is the server's (the port it listens on), and the other
URLs point at the API routes that answer them: `CI_API_V4_URL` is
`<server>/api/v1`, `CI_PROJECT_URL` `<server>/api/v1/projects/<name>`,
`CI_PIPELINE_URL` `.../pipelines/<id>`, `CI_JOB_URL` `.../jobs/<id>`
(`job_url_base`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aicd.errors import GitError
from aicd.executors.base import IR_FILE as IR_FILE
from aicd.executors.workspace import remove_tree, snapshot_commit
from aicd.pipeline import PipelineContext, load_pipeline
from aicd.pipeline.ir import Pipeline, Variable
from aicd.pipeline.predefined import pipeline_variables, slugify
from aicd.store.records import PipelineRecord
from aicd.vcs import changed_files, changed_files_between, git_info

if TYPE_CHECKING:
    from aicd.core.secrets import SecretBox
    from aicd.store.projects_repo import ProjectRecord, ProjectStore

SECRET_VARIABLES_FILE = "secret-variables"
TRIGGER_FILE = "trigger.json"
API_PATH = "/api/v1"
_DONE = ".aicd-complete"
_tree_locks: dict[Path, threading.Lock] = {}
_tree_guard = threading.Lock()


@dataclass(frozen=True)
class Trigger:
    """Who started a pipeline, and from what push (GITLAB_USER_*, CI_COMMIT_BEFORE_SHA)."""

    before_sha: str | None = None  # the commit before a push (zeros: a new branch); None: not a push
    user_login: str | None = None  # None: the commit's author
    user_name: str | None = None  # None: user_login, else the commit's author


@dataclass(frozen=True)
class RefKind:
    branch: str | None
    tag: str | None

    @property
    def name(self) -> str:
        return self.tag or self.branch or ""


def ref_kind(ref: str, refs: dict[str, str]) -> RefKind:
    """Whether `ref` ("main", "v1.0", "refs/tags/v1.0") names a branch or a tag of the mirror.
    A name that is both is the branch, as git resolves it; an unknown name counts as a branch."""
    if ref.startswith("refs/tags/"):
        return RefKind(None, ref.removeprefix("refs/tags/"))
    if ref.startswith("refs/heads/"):
        return RefKind(ref.removeprefix("refs/heads/"), None)
    if f"refs/heads/{ref}" not in refs and f"refs/tags/{ref}" in refs:
        return RefKind(None, ref)
    return RefKind(ref, None)


def commit_tree(home: Path, project_id: int, mirror: Path, sha: str) -> Path:
    """The files of commit `sha`, extracted once (atomically) under home/sources/<project id>/<sha>."""
    dest = home / "sources" / str(project_id) / sha
    with _tree_guard:
        lock = _tree_locks.setdefault(dest, threading.Lock())
    with lock:
        if (dest / _DONE).exists():
            return dest
        scratch = dest.parent / f".{sha}.{os.urandom(4).hex()}"
        try:
            snapshot_commit(mirror, sha, scratch)
            (scratch / _DONE).touch()
            if dest.exists():
                remove_tree(dest)
            scratch.rename(dest)
        finally:
            if scratch.exists():
                remove_tree(scratch)
    return dest


def project_variables(
    store: ProjectStore, box: SecretBox, project: ProjectRecord, *, protected_ref: bool
) -> list[Variable]:
    """The project's CI/CD variables for a run: decrypted, masked ones marked masked."""
    out = []
    for record in store.list_variables(project.id):
        if record.protected and not protected_ref:
            continue
        value = box.decrypt(record.value_encrypted)
        out.append(Variable(record.key, value, masked=record.masked, file=record.file))
    return out


def project_url(server_url: str, project_name: str) -> str:
    """The project's API URL (CI_PROJECT_URL); its pipelines and jobs are under it."""
    from urllib.parse import quote

    return f"{server_url.rstrip('/')}{API_PATH}/projects/{quote(project_name, safe='')}"


def predefined(
    *,
    project: ProjectRecord,
    record: PipelineRecord,
    mirror: Path,
    kind: RefKind,
    server_url: str,
    trigger: Trigger,
    protected_ref: bool,
) -> list[Variable]:
    """GitLab's predefined variables of a server pipeline."""
    from aicd.triggers.mirror import redact

    info = git_info(mirror, record.sha)
    info = dataclasses.replace(
        info,
        ref_name=kind.name or record.ref,
        branch=kind.branch,
        tag=kind.tag,
        default_branch=project.default_branch,
        remote_url=redact(project.repo_url),
        before_sha=trigger.before_sha or info.before_sha,
    )
    login = trigger.user_login or info.author_name or "aicd"
    variables = pipeline_variables(
        info,
        pipeline_id=record.id,
        pipeline_iid=record.iid,
        source=record.source,
        project_dir=Path("/") / project.name,
        created_at=record.created_at,
        server_url=server_url,
        config_path=project.pipeline_file,
        user_login=login,
        project_id=project.id,
    )
    server = server_url.rstrip("/")
    url = project_url(server, project.name)
    overrides = {
        "CI_PROJECT_NAME": project.name,
        "CI_PROJECT_TITLE": project.name,
        "CI_PROJECT_PATH": project.name,
        "CI_PROJECT_PATH_SLUG": slugify(project.name),
        "CI_PROJECT_NAMESPACE": "",
        "CI_PROJECT_ROOT_NAMESPACE": "",
        "CI_API_V4_URL": server + API_PATH,
        "CI_PROJECT_URL": url,
        "CI_PIPELINE_URL": f"{url}/pipelines/{record.id}",
        "GITLAB_USER_NAME": trigger.user_name or trigger.user_login or info.author_name or login,
        "CI_COMMIT_REF_PROTECTED": "true" if protected_ref else "false",
        "CI_REPOSITORY_URL": redact(project.repo_url),
    }
    return [dataclasses.replace(v, value=overrides[v.key]) if v.key in overrides else v for v in variables]


def load_server_pipeline(
    tree: Path,
    mirror: Path,
    file: str,
    *,
    sha: str,
    kind: RefKind,
    predefined_vars: Sequence[Variable],
    variables: Sequence[Variable],
) -> Pipeline:
    """The IR of the pipeline file in `tree` (PipelineError, WorkflowFilteredOut)."""
    context = server_context(mirror, sha=sha, kind=kind, predefined_vars=predefined_vars, variables=variables)
    return load_pipeline(tree, file, context)


def server_context(
    mirror: Path,
    *,
    sha: str,
    kind: RefKind,
    predefined_vars: Sequence[Variable],
    variables: Sequence[Variable],
) -> PipelineContext:
    """What a server pipeline (or its child pipelines) is read with; trigger jobs run child pipelines."""
    try:
        changed = changed_files(mirror, sha) if kind.branch is not None else None
    except GitError:
        changed = None
    return PipelineContext(
        predefined=tuple(predefined_vars),
        variables=tuple(variables),
        changed_files=changed,
        changes_since=functools.partial(_changes_since, mirror, sha),
        child_pipelines=True,
    )


def _changes_since(mirror: Path, sha: str, base: str) -> list[str] | None:
    return changed_files_between(mirror, base, sha)


# -- what is kept for later runs --------------------------------------------------------------


def save_given(run_dir: Path, given: Sequence[Variable], box: SecretBox) -> None:
    """The masked variables given for a run, encrypted, in run_dir/secret-variables."""
    hidden = [dataclasses.asdict(v) for v in given if v.masked]
    if hidden:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(run_dir / SECRET_VARIABLES_FILE, box.encrypt(json.dumps(hidden)))


def _hidden(run_dir: Path, box: SecretBox) -> list[Variable]:
    path = run_dir / SECRET_VARIABLES_FILE
    if not path.exists():
        return []
    return [Variable(**item) for item in json.loads(box.decrypt(path.read_text(encoding="ascii").strip()))]


def save_trigger(run_dir: Path, trigger: Trigger) -> None:
    """run_dir/trigger.json, when there is anything to keep."""
    if trigger != Trigger():
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(run_dir / TRIGGER_FILE, json.dumps(dataclasses.asdict(trigger)))


def load_trigger(run_dir: Path) -> Trigger:
    """The saved Trigger (an empty one when there is none or it cannot be read)."""
    try:
        data = json.loads((run_dir / TRIGGER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Trigger()
    if not isinstance(data, dict):
        return Trigger()
    fields = {f.name for f in dataclasses.fields(Trigger)}
    return Trigger(**{k: v for k, v in data.items() if k in fields and isinstance(v, str)})


def load_given(run_dir: Path, plain: Mapping[str, str] | None, box: SecretBox) -> tuple[Variable, ...]:
    """The variables given for a run: the plain ones (as the pipeline row keeps them) and the masked ones."""
    return (*(Variable(k, v) for k, v in (plain or {}).items()), *_hidden(run_dir, box))


def save_ir(run_dir: Path, pipeline: Pipeline, given: Sequence[Variable]) -> None:
    """run_dir/pipeline.json: the IR with only the given non-secret variables (no project
    variable, no masked value: those are read again for each run)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    plain = tuple(v for v in given if not v.masked)
    _write_atomic(run_dir / IR_FILE, dataclasses.replace(pipeline, variables=plain).to_json())


def load_ir(run_dir: Path, box: SecretBox) -> tuple[Pipeline, tuple[Variable, ...]]:
    """The saved IR and the variables given for the run (masked ones decrypted). OSError/ValueError."""
    pipeline = Pipeline.from_json((run_dir / IR_FILE).read_text(encoding="utf-8"))
    return pipeline, (*pipeline.variables, *_hidden(run_dir, box))


def _write_atomic(path: Path, text: str) -> None:
    scratch = path.with_name(f".{path.name}.{os.urandom(4).hex()}")
    scratch.write_text(text, encoding="utf-8")
    scratch.replace(path)
