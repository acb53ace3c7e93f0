"""Who may do what in a server's model registry: models belong to projects.

- read (list, show, download, lineage, a gate's baseline): a role on the model's project (viewer
  or more), a job token of that project, or a role on (a job of) a project it granted reads to;
- register a version, move or remove an ordinary alias: developer on the model's project (a job
  token of that project counts as developer);
- move or remove a protected alias (``production`` unless the project lists others): maintainer,
  or a job token of that project whose pipeline runs on a protected ref (default branch or tag);
- a model no project owns (registered before models had owners, or by an admin without a
  project): everyone reads it, only admins change it. Admins do everything.

A model the caller may not read answers as if it did not exist (404), as projects do.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from aicd.core.access import Principal, Role
from aicd.errors import NotFoundError, PermissionDeniedError


@dataclass(frozen=True)
class RegistryAccess:
    principal: Principal
    roles: dict[int, Role] | None  # project id -> role; None: an admin (everything)
    granted: frozenset[int]  # projects whose models one of the caller's projects may read

    def role_on(self, project_id: int | None) -> Role | None:
        if self.roles is None:
            return Role.MAINTAINER
        if project_id is None:
            return None
        return self.roles.get(project_id)

    def can_read(self, owner: int | None) -> bool:
        if self.roles is None or owner is None:
            return True
        return owner in self.roles or owner in self.granted

    def check_read(self, name: str, owner: int | None) -> None:
        if not self.can_read(owner):
            raise NotFoundError(f"no model named {name!r}")

    def check_write(self, name: str, owner: int | None, what: str) -> None:
        """Register a version, or move an ordinary alias: developer on the model's project."""
        self.check_read(name, owner)
        if self.roles is None:
            return
        if owner is None:
            raise PermissionDeniedError(f"model {name!r} belongs to no project: only an admin can {what}")
        role = self.role_on(owner)
        if role is None or role < Role.DEVELOPER:
            have = "no role" if role is None else f"the {role.label} role"
            raise PermissionDeniedError(
                f"model {name!r}: to {what} you need the developer role on its project; you have {have}"
            )

    def check_alias(self, name: str, owner: int | None, alias: str, protected: Collection[str]) -> None:
        """Move or remove `alias`: developer, and maintainer when the alias is protected."""
        self.check_write(name, owner, f"change alias {alias!r}")
        if self.roles is None or alias not in protected:
            return
        job = self.principal.job
        if job is not None:
            if job.project_id == owner and job.protected_ref:
                return
            raise PermissionDeniedError(
                f"alias {alias!r} of model {name!r} is protected: a job may move it only in a pipeline "
                "of a protected ref (the default branch or a tag)"
            )
        role = self.role_on(owner)
        if role is None or role < Role.MAINTAINER:
            raise PermissionDeniedError(
                f"alias {alias!r} of model {name!r} is protected: moving or removing it needs the "
                "maintainer role on the model's project"
            )

    def developer_projects(self) -> list[int]:
        """The projects where the caller may register a new model."""
        if self.roles is None:
            return []
        return sorted(pid for pid, role in self.roles.items() if role >= Role.DEVELOPER)
