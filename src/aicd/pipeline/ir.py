"""The pipeline intermediate representation (IR).

The front end turns `.gitlab-ci.yml` (plus the run's context: predefined and
pipeline variables, changed files) into one frozen :class:`Pipeline`. It is
*resolved*: includes, `extends`, `!reference`, `default`, `inherit`,
`parallel` expansion and `rules` have all been applied, so it holds exactly
the jobs this pipeline has. It is JSON-serialisable (`to_json`/`from_json`, validated on the way in):
the same object is what the local engine runs and what a remote worker gets.

Plain frozen dataclasses (not pydantic models): `aicd run` builds the IR on
every invocation and pydantic's model set-up alone cost ~100 ms of start-up.
Use `dataclasses.replace(obj, field=...)` to derive a changed copy.

Strings that GitLab expands at run time (script lines, variable values,
`artifacts:paths`, `cache:key`, `environment:name`...) are kept raw here; the
executor expands them with the job's final variables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from aicd.pipeline.codec import dumps, loads

When = Literal["on_success", "on_failure", "always", "manual", "delayed", "never"]
ArtifactsWhen = Literal["on_success", "on_failure", "always"]
CachePolicy = Literal["pull-push", "pull", "push"]
EnvAction = Literal["start", "prepare", "stop", "verify", "access"]

DEFAULT_STAGES: tuple[str, ...] = (".pre", "build", "test", "deploy", ".post")


@dataclass(frozen=True, slots=True)
class Location:
    """Where a value came from: file, line and column (1-based; 0 when unknown)."""

    file: str = ""
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True)
class Variable:
    """One variable definition. `expand=False` means `$` is literal."""

    key: str
    value: str
    expand: bool = True
    masked: bool = False  # never printed; set for secrets from CLI/env/files
    file: bool = False  # GitLab "file" type: value written to a temp file, path in the variable


@dataclass(frozen=True, slots=True)
class Need:
    """One entry of a job's `needs`: the job, and whether its artifacts come along."""

    job: str  # the full (expanded) job name
    artifacts: bool = True
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Retry:
    """`retry`: how many more attempts, on which failures and exit codes."""

    max: int = 0  # 0..2 in GitLab
    when: tuple[str, ...] = ("always",)
    exit_codes: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Reports:
    """`artifacts:reports`: the files of each report type."""

    junit: tuple[str, ...] = ()
    dotenv: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    other: tuple[str, ...] = ()  # report types aicd keeps as files but does not parse


@dataclass(frozen=True, slots=True)
class Artifacts:
    """`artifacts`: what a job keeps, and when."""

    paths: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    untracked: bool = False
    when: ArtifactsWhen = "on_success"
    expire_in: str | None = None
    name: str | None = None
    reports: Reports = field(default_factory=Reports)


@dataclass(frozen=True, slots=True)
class Cache:
    """One `cache` entry: key, paths, policy and when."""

    key: str = "default"  # raw; expanded at run time
    key_files: tuple[str, ...] = ()  # cache:key:files; the key is a hash of these
    key_prefix: str | None = None
    paths: tuple[str, ...] = ()
    untracked: bool = False
    policy: CachePolicy = "pull-push"
    when: ArtifactsWhen = "on_success"
    fallback_keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Environment:
    """`environment`: where a job deploys."""

    name: str
    url: str | None = None
    action: EnvAction = "start"
    deployment_tier: str | None = None
    on_stop: str | None = None
    auto_stop_in: str | None = None


@dataclass(frozen=True, slots=True)
class Trigger:
    """A trigger job's child pipeline (`trigger: include: local`)."""

    include: str  # the child pipeline's file: relative to the project, or to artifact_job's artifacts
    strategy: str | None = None  # "depend": the trigger job takes the child pipeline's status
    forward_yaml_variables: bool = True  # the trigger job's variables become the child's pipeline variables
    forward_pipeline_variables: bool = False  # so do this pipeline's own pipeline variables
    artifact_job: str | None = None  # a dynamic child pipeline: `include` is an artifact of this job


@dataclass(frozen=True, slots=True)
class Job:
    """One job of the pipeline, resolved (after rules, extends and parallel expansion)."""

    name: str  # full name, e.g. 'test 1/3' or 'test: [linux, amd64]'
    base_name: str  # name in the YAML before parallel expansion
    stage: str
    before_script: tuple[str, ...] = ()
    script: tuple[str, ...] = ()
    after_script: tuple[str, ...] = ()
    # YAML variables in precedence order, lowest first: global (as inherited),
    # then job, then those set by the matching rule / workflow rule.
    variables: tuple[Variable, ...] = ()
    when: When = "on_success"
    start_in_s: float | None = None  # for when: delayed
    allow_failure: bool = False
    allow_failure_exit_codes: tuple[int, ...] = ()
    needs: tuple[Need, ...] | None = None  # None: stage order; (): start at once
    dependencies: tuple[str, ...] | None = None  # None: all earlier-stage jobs
    retry: Retry = field(default_factory=Retry)
    timeout_s: float | None = None
    node_index: int | None = None  # CI_NODE_INDEX for parallel jobs
    node_total: int | None = None
    matrix: tuple[tuple[str, str], ...] = ()  # the parallel:matrix variables of this instance
    artifacts: Artifacts | None = None
    cache: tuple[Cache, ...] = ()
    environment: Environment | None = None
    resource_group: str | None = None
    interruptible: bool = False
    coverage: str | None = None  # regex, GitLab syntax '/.../'
    image: str | None = None  # recorded only: aicd runs jobs in the shell
    services: tuple[str, ...] = ()  # recorded only
    tags: tuple[str, ...] = ()
    description: str = ""
    location: Location = field(default_factory=Location)
    trigger: Trigger | None = None  # a trigger job: runs a child pipeline instead of a script


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The resolved pipeline: its stages, its jobs and its variables."""

    stages: tuple[str, ...] = DEFAULT_STAGES
    jobs: tuple[Job, ...] = ()
    # Pipeline-level variables (CLI --variable, project/env files): highest
    # precedence of all user variables.
    variables: tuple[Variable, ...] = ()
    # Predefined CI_* variables known when the pipeline was created.
    predefined: tuple[Variable, ...] = ()
    name: str | None = None  # workflow:name
    file: str = ".gitlab-ci.yml"
    warnings: tuple[str, ...] = ()
    # jobs defined but left out by rules/when: never (name -> reason)
    excluded: tuple[tuple[str, str], ...] = ()

    def job(self, name: str) -> Job:
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(name)

    def stage_index(self, stage: str) -> int:
        return self.stages.index(stage)

    def to_json(self) -> str:
        return dumps(self)

    @classmethod
    def from_json(cls, text: str | bytes) -> Pipeline:
        """Raises ValueError naming the first field that does not fit."""
        return loads(cls, text)
