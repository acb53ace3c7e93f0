"""Which jobs a run has and what each one waits for (the DAG), checked for cycles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aicd.engine.model import RunOptions
from aicd.errors import AicdError
from aicd.pipeline.ir import Job, Pipeline


@dataclass(frozen=True)
class Plan:
    """The jobs of a run and who waits for whom."""

    jobs: tuple[Job, ...]  # the run's jobs, in definition order
    waits_for: Mapping[str, tuple[str, ...]]  # job -> jobs it waits for
    dag: Mapping[str, bool]  # job -> it uses `needs` (not stage order)
    rank: Mapping[str, tuple[int, int]]  # job -> (stage index, definition index)

    def artifact_sources(self, job: Job) -> list[str]:
        """Names of the jobs whose artifacts (and dotenv) `job` receives, in stage/definition order.

        As GitLab: with `needs`, the needed jobs with `artifacts: true`; else
        every job of earlier stages; `dependencies`, when given, keeps only
        the jobs it names. Jobs not in this run are left out.
        """
        if job.needs is not None:
            names = [n.job for n in job.needs if n.artifacts]
        else:
            names = list(self.waits_for[job.name])
        if job.dependencies is not None:
            keep = set(job.dependencies)
            names = [n for n in names if n in keep]
        return sorted({n for n in names if n in self.rank}, key=self.rank.__getitem__)


def select_jobs(pipeline: Pipeline, options: RunOptions) -> list[Job]:
    """The jobs this run has: all, or the chosen ones (and, with `with_needs`, what they need)."""
    if options.only is None:
        return list(pipeline.jobs)
    chosen = set(options.only)
    if options.with_needs:
        by_name = {j.name: j for j in pipeline.jobs}
        todo = [n for n in chosen if n in by_name]
        while todo:
            for need in by_name[todo.pop()].needs or ():
                if need.job not in chosen and need.job in by_name:
                    chosen.add(need.job)
                    todo.append(need.job)
    return [j for j in pipeline.jobs if j.name in chosen]


def make_plan(pipeline: Pipeline, options: RunOptions) -> Plan:
    """Raises AicdError when a job's stage is unknown or the jobs wait for each other in a cycle."""
    jobs = select_jobs(pipeline, options)
    stage_of = {s: i for i, s in enumerate(pipeline.stages)}
    for job in jobs:
        if job.stage not in stage_of:
            stages = ", ".join(pipeline.stages)
            raise AicdError(f'job "{job.name}": stage "{job.stage}" is not one of the stages ({stages})')
    rank = {j.name: (stage_of[j.stage], i) for i, j in enumerate(jobs)}
    waits_for: dict[str, tuple[str, ...]] = {}
    dag: dict[str, bool] = {}
    # Jobs in stage order wait for every job of the earlier stages: one tuple per stage, shared by
    # the jobs of that stage (the engine recognises it: one barrier per stage, not one per job).
    earlier: dict[int, tuple[str, ...]] = {}
    for job in jobs:
        dag[job.name] = job.needs is not None
        if job.needs is not None:
            # needs on jobs that are not in this run (optional, or not selected) are ignored
            names = dict.fromkeys(n.job for n in job.needs if n.job in rank)
            waits_for[job.name] = tuple(names)
        else:
            mine = rank[job.name][0]
            if mine not in earlier:
                earlier[mine] = tuple(j.name for j in jobs if rank[j.name][0] < mine)
            waits_for[job.name] = earlier[mine]
    _check_acyclic([j.name for j in jobs], waits_for)
    return Plan(tuple(jobs), waits_for, dag, rank)


def _check_acyclic(names: Sequence[str], waits_for: Mapping[str, tuple[str, ...]]) -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    # tuples (shared by the jobs of a stage) whose every job is done: a job waiting for one of them
    # cannot be on a cycle through them, so its wait list is not walked again (linear, not n^2)
    walked: set[int] = set()
    for root in names:
        if root in state:
            continue
        if id(waits_for[root]) in walked:
            state[root] = 2
            continue
        path = [root]
        stack = [iter(waits_for[root])]
        state[root] = 1
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                done = path.pop()
                state[done] = 2
                walked.add(id(waits_for[done]))
                stack.pop()
            elif dep not in state and id(waits_for[dep]) in walked:
                state[dep] = 2
            elif state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep]
                raise AicdError(
                    "these jobs wait for each other (needs or stage order), so none could start: "
                    + " -> ".join(cycle)
                    + "; remove one of these needs or move a job to a later stage"
                )
            elif dep not in state:
                state[dep] = 1
                path.append(dep)
                stack.append(iter(waits_for[dep]))
