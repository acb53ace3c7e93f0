"""Server projects: add, update, remove, and their variables (shared by the API and the CLI).

Validation happens here: the name, the repository URL (checked with
``git ls-remote``: the repository must exist and hold the default branch),
the pipeline file, the poll interval, variable keys and masked values.
Secrets (the webhook secret, variable values) are encrypted with the
SecretBox before they reach the store, and never appear in audit details or
messages. Every change records an audit entry.

These functions block (git, database): the API calls them in a thread.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Protocol

from aicd.errors import ConfigError, ConflictError, GitError, NotFoundError, PermissionDeniedError
from aicd.store.projects_repo import ProjectRecord, ProjectStore, VariableRecord
from aicd.triggers import mirror

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
VARIABLE_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_NAME = 100
MIN_POLL_INTERVAL_S = 1.0
MIN_MASKED_LENGTH = 8
LS_REMOTE_TIMEOUT_S = 30.0
_NAME = re.compile(NAME_PATTERN)
_VARIABLE_KEY = re.compile(VARIABLE_KEY_PATTERN)
_URL_SCHEMES = ("file://", "https://", "http://", "ssh://", "git://", "git+ssh://", "ssh+git://")
_SCP_LIKE = re.compile(r"^(?:[A-Za-z0-9._~+-]+@)?[A-Za-z0-9.-]+:(?!//)[^\s]+$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::?")


class _Secrets(Protocol):
    def encrypt(self, plain: str) -> str: ...

    def decrypt(self, token: str) -> str: ...


class _Accounts(Protocol):
    def audit(
        self,
        actor: str,
        action: str,
        *,
        project_id: int | None = None,
        target: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> None: ...


class _Settings(Protocol):
    @property
    def home(self) -> Path: ...

    @property
    def allowed_repo_roots(self) -> tuple[Path, ...]: ...


class Stores(Protocol):
    """What these functions need: ServerState has all of it."""

    @property
    def settings(self) -> _Settings: ...

    @property
    def projects(self) -> ProjectStore: ...

    @property
    def accounts(self) -> _Accounts: ...

    @property
    def secrets(self) -> _Secrets: ...


# -- validation -------------------------------------------------------------------------------


def check_text(label: str, value: str, *, max_length: int = 4096, multiline: bool = False) -> str:
    """Text that can go to git, the database and back: valid UTF-8, no NUL or control characters."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{label}: not valid text (unpaired surrogate characters)") from None
    allowed = "\n\r\t" if multiline else "\t"
    if any((ord(c) < 32 and c not in allowed) or c == "\x7f" for c in value):
        raise ConfigError(f"{label}: control characters are not allowed")
    if len(value) > max_length:
        raise ConfigError(f"{label}: longer than {max_length} characters")
    return value


def check_name(name: str) -> str:
    if name.isdigit():
        raise ConfigError(f"project name {name!r}: a name of digits only would be read as a project id")
    if not _NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise ConfigError(
            f"project name {name!r}: use lowercase letters, digits, '.', '_' and '-', starting with a "
            f"letter or digit, at most {MAX_NAME} characters"
        )
    return name


def normalize_repo_url(url: str, *, base: Path | None = None) -> str:
    """A URL git can fetch: local paths made absolute; file://, http(s)://, ssh://, git:// and
    user@host:path kept. Other transports (ext::, fd::, ...) are refused. ConfigError."""
    url = check_text("repository URL", url.strip())
    if not url:
        raise ConfigError("repository URL is empty: give a path, file://, https://, ssh:// or user@host:path")
    if url.startswith("-") or any(c in url for c in "\n\r\0"):
        raise ConfigError(f"{mirror.redact(url)!r} is not a repository URL")
    lowered = url.lower()
    if lowered.startswith(_URL_SCHEMES):
        return url
    if "://" in url or (_SCHEME.match(url) and "::" in url.split("/")[0]):
        scheme = url.split(":", 1)[0]
        raise ConfigError(
            f"repository URL {mirror.redact(url)!r}: transport {scheme!r} is not supported; use a path, "
            "file://, https://, http://, ssh://, git:// or user@host:path"
        )
    try:
        if _SCP_LIKE.match(url) and not Path(url).exists():
            return url
        path = Path(url).expanduser()
        if not path.is_absolute():
            path = (base or Path.cwd()) / path
        return str(path.resolve())
    except (OSError, RuntimeError) as exc:  # e.g. a name too long, a symlink loop
        raise ConfigError(f"repository path {mirror.redact(url)!r}: {exc}") from None


def check_repo_location(url: str, *, is_admin: bool, allowed_roots: Sequence[Path], home: Path) -> None:
    """A local repository (path or file://) is for admins only, under an allowed root, never in the
    server's home (other projects' mirrors, keys, database), symlinks and `..` resolved.
    PermissionDeniedError (not an admin) or ConfigError."""
    try:
        path = mirror.local_repo_path(url)
    except GitError as exc:
        raise ConfigError(str(exc)) from None
    if path is None:
        return
    if not is_admin:
        raise PermissionDeniedError(
            "only an admin may use a repository on the server's disk (a path or file://): "
            "give an https://, ssh:// or git:// URL"
        )
    shown = mirror.redact(url)
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise ConfigError(
            f"cannot read the repository {shown}: the folder does not exist on the server"
        ) from None
    if mirror.in_home(home, url):
        raise ConfigError(f"repository {shown} is inside the server's home, whose files no project may read")
    if not any(real == root or real.is_relative_to(root) for root in allowed_roots):
        allowed = ", ".join(str(root) for root in allowed_roots)
        hint = f"allowed: {allowed}" if allowed else "none is allowed now"
        raise ConfigError(
            f"repository {shown} is not under an allowed root for local repositories ({hint}); "
            "start the server with --allowed-repo-root DIR (or AICD_ALLOWED_REPO_ROOTS) to allow one"
        )


def check_remote(url: str, branch: str, *, timeout: float = LS_REMOTE_TIMEOUT_S) -> dict[str, str]:
    """`git ls-remote` the repository: it must answer and have `branch`. Its branches -> sha. ConfigError."""
    shown = mirror.redact(url)
    try:
        out = mirror.run_git(["ls-remote", "--heads", "--", url], timeout=timeout)
    except GitError as exc:
        raise ConfigError(f"cannot read the repository {shown}: {exc}") from None
    heads: dict[str, str] = {}
    for line in out.decode(errors="replace").splitlines():
        sha, _, ref = line.partition("\t")
        if ref.startswith("refs/heads/"):
            heads[ref.removeprefix("refs/heads/")] = sha
    if branch not in heads:
        known = ", ".join(sorted(heads)[:20]) or "none: the repository has no commits yet"
        raise ConfigError(
            f"branch {branch!r} does not exist in {shown} (its branches: {known}); give --branch or "
            "default_branch with an existing branch"
        )
    return heads


def check_branch_name(branch: str) -> str:
    branch = check_text("branch", branch.strip(), max_length=255).removeprefix("refs/heads/")
    bad = not branch or branch.startswith(("-", "/")) or branch.endswith(("/", ".lock", "."))
    if bad or ".." in branch or any(c.isspace() or c in "~^:?*[\\" for c in branch):
        raise ConfigError(f"{branch!r} is not a valid branch name")
    return branch


def check_pipeline_file(path: str) -> str:
    path = check_text("pipeline file", path.strip(), max_length=1024)
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or "\\" in path:
        raise ConfigError(
            f"pipeline file {path!r}: give a path relative to the repository root, e.g. .gitlab-ci.yml"
        )
    return str(pure)


def check_poll_interval(value: float | None) -> float | None:
    if value is None or value == 0:
        return None
    if value != value or value < MIN_POLL_INTERVAL_S or value > 7 * 86400:
        raise ConfigError(
            f"poll interval {value:g} s: give {MIN_POLL_INTERVAL_S:g} s to 7 days, or none to not poll"
        )
    return float(value)


def check_webhook_secret(secret: str) -> str:
    check_text("webhook secret", secret, max_length=1000)
    if len(secret) < 8 or len(secret) > 1000 or any(c in secret for c in "\r\n\0"):
        raise ConfigError("webhook secret: give 8 to 1000 characters on one line")
    return secret


def check_variable(key: str, value: str, *, masked: bool) -> None:
    if not _VARIABLE_KEY.fullmatch(key) or len(key) > 255:
        raise ConfigError(
            f"variable key {key!r}: use letters, digits and '_', not starting with a digit (at most 255)"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"variable {key}: the value is not valid text (unpaired surrogates)") from None
    if "\0" in value:
        raise ConfigError(f"variable {key}: the value contains a NUL character, which no job could receive")
    if masked and (len(value) < MIN_MASKED_LENGTH or "\n" in value or "\r" in value):
        raise ConfigError(
            f"variable {key}: a masked value must be one line of at least {MIN_MASKED_LENGTH} characters "
            "(shorter values would be masked everywhere in logs)"
        )


# -- projects ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewProject:
    name: str
    repo_url: str
    default_branch: str = "main"
    pipeline_file: str = ".gitlab-ci.yml"
    poll_interval_s: float | None = None
    webhook_secret: str | None = None


def add_project(stores: Stores, actor: str, spec: NewProject, *, is_admin: bool = True) -> ProjectRecord:
    """Validate, check the remote, create. ConfigError / ConflictError / PermissionDeniedError."""
    name = check_name(spec.name)
    url = normalize_repo_url(spec.repo_url)
    _check_location(stores, url, is_admin)
    branch = check_branch_name(spec.default_branch)
    pipeline_file = check_pipeline_file(spec.pipeline_file)
    interval = check_poll_interval(spec.poll_interval_s)
    secret = check_webhook_secret(spec.webhook_secret) if spec.webhook_secret else None
    _require_free(stores, name)
    check_remote(url, branch)
    record = stores.projects.create(
        name, url, branch, pipeline_file, interval, stores.secrets.encrypt(secret) if secret else None
    )
    stores.accounts.audit(
        actor,
        "project.create",
        project_id=record.id,
        target=name,
        details={
            "repo_url": mirror.redact(url),
            "default_branch": branch,
            "pipeline_file": pipeline_file,
            "poll_interval_s": interval,
            "webhook_secret": "set" if secret else None,
        },
    )
    return record


def _check_location(stores: Stores, url: str, is_admin: bool) -> None:
    settings = stores.settings
    check_repo_location(url, is_admin=is_admin, allowed_roots=settings.allowed_repo_roots, home=settings.home)


def _require_free(stores: Stores, name: str) -> None:
    try:
        stores.projects.get(name)
    except NotFoundError:
        return
    raise ConflictError(f"a project named {name!r} already exists")


class Unset(Enum):
    """Not given (as opposed to None, which means "none")."""

    UNSET = 0


UNSET = Unset.UNSET


def update_project(
    stores: Stores,
    actor: str,
    project: ProjectRecord,
    *,
    repo_url: str | None = None,
    default_branch: str | None = None,
    pipeline_file: str | None = None,
    poll_interval_s: float | Unset | None = UNSET,
    webhook_secret: str | Unset | None = UNSET,
    is_admin: bool = False,
) -> ProjectRecord:
    """Change what is given (None: unchanged; poll_interval_s None: stop polling; webhook_secret
    None or "": remove it). A new URL or branch is checked against the remote."""
    fields: dict[str, object] = {}
    details: dict[str, object] = {}
    url = normalize_repo_url(repo_url) if repo_url is not None else project.repo_url
    if url != project.repo_url:
        _check_location(stores, url, is_admin)
    branch = check_branch_name(default_branch) if default_branch is not None else project.default_branch
    if url != project.repo_url or branch != project.default_branch:
        check_remote(url, branch)
    if url != project.repo_url:
        fields["repo_url"] = url
        details["repo_url"] = mirror.redact(url)
    if branch != project.default_branch:
        fields["default_branch"] = details["default_branch"] = branch
    if pipeline_file is not None:
        fields["pipeline_file"] = details["pipeline_file"] = check_pipeline_file(pipeline_file)
    if not isinstance(poll_interval_s, Unset):
        fields["poll_interval_s"] = details["poll_interval_s"] = check_poll_interval(poll_interval_s)
    if not isinstance(webhook_secret, Unset):
        if webhook_secret:
            fields["webhook_secret"] = stores.secrets.encrypt(check_webhook_secret(webhook_secret))
            details["webhook_secret"] = "set"
        else:
            fields["webhook_secret"] = None
            details["webhook_secret"] = "removed"
    updated = stores.projects.update(project.id, **fields)
    if "repo_url" in fields:
        # Another repository: forget what was seen (the next poll is a first poll) and re-clone.
        stores.projects.clear_refs(project.id)
        shutil.rmtree(mirror.mirror_path(stores.settings.home, project), ignore_errors=True)
    if details:
        stores.accounts.audit(
            actor, "project.update", project_id=project.id, target=project.name, details=details
        )
    return updated


def remove_project(stores: Stores, actor: str, project: ProjectRecord, run_dirs: Sequence[str] = ()) -> None:
    """Delete the project, its pipelines, variables, mirror and cache, and the given run folders
    (under the home only). The caller cancels the project's running pipelines first."""
    stores.projects.delete(project.id)
    shutil.rmtree(mirror.mirror_path(stores.settings.home, project), ignore_errors=True)
    shutil.rmtree(stores.settings.home / "cache" / str(project.id), ignore_errors=True)
    home = stores.settings.home.resolve()
    for run_dir in run_dirs:
        path = Path(run_dir).resolve()
        if path.is_relative_to(home) and path != home:
            shutil.rmtree(path, ignore_errors=True)
    stores.accounts.audit(actor, "project.delete", target=project.name, details={"id": project.id})


# -- variables --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VariableView:
    """A variable as the API shows it: a masked variable's value is None."""

    key: str
    value: str | None
    masked: bool
    protected: bool
    file: bool
    updated_at: float


def view_variable(stores: Stores, record: VariableRecord) -> VariableView:
    value = None if record.masked else stores.secrets.decrypt(record.value_encrypted)
    return VariableView(record.key, value, record.masked, record.protected, record.file, record.updated_at)


def set_variable(
    stores: Stores,
    actor: str,
    project: ProjectRecord,
    key: str,
    value: str,
    *,
    masked: bool = False,
    protected: bool = False,
    file: bool = False,
) -> VariableRecord:
    check_variable(key, value, masked=masked)
    record = stores.projects.set_variable(
        project.id, key, stores.secrets.encrypt(value), masked=masked, protected=protected, file=file
    )
    stores.accounts.audit(
        actor,
        "variable.set",
        project_id=project.id,
        target=key,
        details={"masked": masked, "protected": protected, "file": file},
    )
    return record


def delete_variable(stores: Stores, actor: str, project: ProjectRecord, key: str) -> None:
    stores.projects.delete_variable(project.id, key)
    stores.accounts.audit(actor, "variable.delete", project_id=project.id, target=key)
