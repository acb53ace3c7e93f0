"""Which corpus cases aicd is expected to agree on, and why the others are left out.

Every case of the corpus is expected to agree with the reference runner
(gitlab-ci-local 4.60.1) unless it is listed in `CASES` with a category:

- OUT_OF_SCOPE: the reference could not run the case here (it needs Docker
  images or services, a remote, a child or multi-project pipeline). Where
  GitLab's documented result is clear, `gitlab` holds it and aicd is checked
  against it (aicd runs `image:` jobs in the shell, with a warning).
- DIVERGENT: the reference's result is not GitLab's. Either a feature of
  gitlab-ci-local that GitLab does not have, a bug or crash of the reference,
  or GitLab's documentation says otherwise (the reason quotes it and names
  the page). `gitlab` then holds the run GitLab documents; aicd is checked
  against it, and a divergent case that agrees with the reference fails so
  that this table stays honest.

`gitlab` texts have the shape of `expected-run.txt`: `JOB > line` output
lines, a blank line, ` PASS  job` / ` WARN  job` / ` FAIL  job` summary
lines, `pipeline finished`, `exit=N`; a text without `pipeline finished` is
a refusal (the pipeline is not created).

`OPTIONS` holds per-case comparison normalisations, each with its reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from gclocal_corpus import CompareOptions


class Category(StrEnum):
    AGREE = "agree"
    DIVERGENT = "divergent"
    OUT_OF_SCOPE = "out of scope"


# Kinds of reason (the wording the report uses).
DOCKER = "out of scope: needs Docker image/services (reference failed with docker pull)"
REF_FEATURE = "reference runner feature not in GitLab"
REF_BUG = "reference runner bug"
GITLAB_DOC = "GitLab documents otherwise"
UNSUPPORTED = "unsupported keyword"


@dataclass(frozen=True)
class CaseNote:
    category: Category
    kind: str
    reason: str
    gitlab: str | None = None  # the run GitLab documents, in expected-run.txt form
    doc: str = ""  # the documentation page the reason quotes


@dataclass(frozen=True)
class CaseOptions:
    compare: CompareOptions = field(default_factory=CompareOptions)
    reason: str = ""


def _run(text: str) -> str:
    """Dedent an expected run written inline (lines keep their single leading space)."""
    lines = text.strip("\n").split("\n")
    return "\n".join(line[4:] if line.startswith("    ") else line for line in lines) + "\n"


REFUSED = "refused: the pipeline is not created\nexit=1\n"

CASES: dict[str, CaseNote] = {
    # ------------------------------------------------------------------ out of scope
    "after-script": CaseNote(
        Category.OUT_OF_SCOPE,
        DOCKER,
        "default image busybox; the reference died on `docker pull`. GitLab runs the four jobs "
        "stage by stage; CI_JOB_STATUS is `running` in script and the job's result in after_script.",
        gitlab=_run(
            """
    build-job > Build something
    build-job > Cleanup after test
    test-job > Test something
    test-job > Cleanup after test
    deploy-job > running
    deploy-job > success
    post-job > failed

     PASS  build-job
     PASS  test-job
     PASS  deploy-job
     FAIL  post-job
    pipeline finished
    exit=1
    """
        ),
        doc="https://docs.gitlab.com/ci/variables/predefined_variables/ (CI_JOB_STATUS)",
    ),
    "artifacts-dotenv": CaseNote(
        Category.OUT_OF_SCOPE,
        DOCKER,
        "jobs use an image chosen by a dotenv variable and a redis service resolved by alias; "
        "the shell has neither",
    ),
    "artifacts-reports-dotenv": CaseNote(
        Category.OUT_OF_SCOPE,
        DOCKER,
        "build-image/deploy-image use docker.io/library/alpine; the reference died on `docker pull`. "
        "In GitLab every deploy job sees BUILD_VERSION from its build's dotenv report and no build.env "
        "file (a report is not an artifact path).",
        gitlab=_run(
            """

     PASS  build-image
     PASS  build-shell-iso
     PASS  build-shell-noiso
     PASS  deploy-image
     PASS  deploy-shell-iso
     PASS  deploy-shell-noiso
    pipeline finished
    exit=0
    """
        ),
        doc="https://docs.gitlab.com/ci/yaml/artifacts_reports/#artifactsreportsdotenv",
    ),
    "artifacts-with-cache": CaseNote(
        Category.OUT_OF_SCOPE,
        DOCKER,
        "image docker.io/library/alpine; the reference died on `docker pull`. The artifact path/ "
        "reaches test-job through needs.",
        gitlab=_run(
            """

     PASS  pre-job
     PASS  test-job
    pipeline finished
    exit=0
    """
        ),
    ),
    "cache-key-files": CaseNote(
        Category.OUT_OF_SCOPE,
        DOCKER,
        "two jobs use image bash; the reference died on `docker pull`. With the shell the four jobs "
        "pass: consume-cache finds the cache produce-cache saved under the same key:files key.",
        gitlab=_run(
            """
    cache-key-file referencing $CI_PROJECT_DIR > 1
    cache-key-file file dont exist > 1

     PASS  produce-cache
     PASS  consume-cache
     PASS  cache-key-file referencing $CI_PROJECT_DIR
     PASS  cache-key-file file dont exist
    pipeline finished
    exit=0
    """
        ),
        doc="https://docs.gitlab.com/ci/yaml/#cachekeyfiles",
    ),
    "force-shell-executor": CaseNote(
        Category.OUT_OF_SCOPE,
        DOCKER,
        "image alpine:latest; the reference died on `docker pull` (the case is about its "
        "--force-shell-executor flag). The script itself prints one line.",
        gitlab=_run(
            """
    test-job > Heya from default-image

     PASS  test-job
    pipeline finished
    exit=0
    """
        ),
    ),
    "pipeline-iid": CaseNote(
        Category.OUT_OF_SCOPE,
        DOCKER,
        "image busybox; the reference died on `docker pull`. The job passes; its line holds the "
        "pipeline's iid, which differs by run (not compared).",
        gitlab=_run(
            """

     PASS  test-job
    pipeline finished
    exit=0
    """
        ),
    ),
    "predefined-variables": CaseNote(
        Category.OUT_OF_SCOPE,
        DOCKER,
        "test-job uses image busybox; the reference died on `docker pull`. Both jobs pass; "
        "test-job prints the whole environment (not compared), shell-isolation prints CI_PROJECT_DIR.",
        gitlab=_run(
            """
    shell-isolation > <project>

     PASS  test-job
     PASS  shell-isolation
    pipeline finished
    exit=0
    """
        ),
    ),
    "script-failures": CaseNote(
        Category.OUT_OF_SCOPE,
        DOCKER,
        "one job uses image nginx:alpine; the reference died on `docker pull`. GitLab: a failing "
        "after_script does not change the job's result; allow_failure:exit_codes allows only the "
        "listed codes; rules:allow_failure overrides the job's; deploy-job needs a failed job and "
        "does not run.",
        gitlab=_run(
            """
    test-job > Not printed
    test-job > Test something
    test-job > That fails
    test-job > Something in the log
    allow-failure-job > This is printed right before the failure

     FAIL  test-job
     FAIL  test-job-after-script
     WARN  allow-failure-job
     WARN  allow-failure-after-script
     WARN  exit_code[number] allowed
     FAIL  exit_code[number] not allowed
     WARN  exit_code[number[]] allowed
     FAIL  exit_code[number[]] not allowed
     FAIL  rules:allow_failure precedence
     WARN  rules:without allow_failure
    pipeline finished
    exit=1
    """
        ),
        doc="https://docs.gitlab.com/ci/yaml/#allow_failureexit_codes",
    ),
    "trigger": CaseNote(
        Category.OUT_OF_SCOPE,
        DOCKER,
        "image alpine with `apk add`, a child pipeline generated as an artifact and a multi-project "
        "trigger (needs a GitLab server)",
    ),
    "variable-expansion": CaseNote(
        Category.OUT_OF_SCOPE,
        DOCKER,
        "two jobs use image alpine and a nginx service; the reference died on `docker pull` before "
        "any job finished",
    ),
    # ------------------------------------------------------------------ divergent
    "artifacts-many-paths": CaseNote(
        Category.DIVERGENT,
        REF_BUG,
        "the reference copied none of the 9000 artifact files (`!! no artifacts was copied !!`), so "
        'consume-artifacts failed. GitLab: "By default, jobs in later stages automatically download '
        'all the artifacts created by jobs in earlier stages."',
        gitlab=_run(
            """

     PASS  produce-artifacts
     PASS  consume-artifacts
    pipeline finished
    exit=0
    """
        ),
        doc="https://docs.gitlab.com/ci/yaml/#dependencies",
    ),
    "comment-directive-anchor": CaseNote(
        Category.DIVERGENT,
        REF_FEATURE,
        "gitlab-ci-local reads `# @Description` comments and failed on one that spans lines; for "
        "GitLab (and YAML) comments are ignored, so the seven jobs run.",
        gitlab=_run(
            """
    firstjob > first
    sourcemaps > sourcemaps
    deploy to prod > deploy
    build/image > build
    quoted job > quoted
    single quoted > single
    plainjob > test

     PASS  firstjob
     PASS  sourcemaps
     PASS  deploy to prod
     PASS  build/image
     PASS  quoted job
     PASS  single quoted
     PASS  plainjob
    pipeline finished
    exit=0
    """
        ),
    ),
    "coverage": CaseNote(
        Category.DIVERGENT,
        REF_BUG,
        "the reference compiles coverage regexes as JavaScript RegExp and crashed on `(?i)`. GitLab's "
        "code coverage page lists `/(?i)total.*? (100(?:\\.0+)?\\%|[1-9]?\\d(?:\\.\\d+)?\\%)$/` as "
        "the pytest-cov example (RE2 syntax, where `(?i)` is valid), so the three jobs pass.",
        gitlab=_run(
            """
    test-job >   Lines:   48.46% (510/650)
    test-job >   Lines:   78.46% (510/650)
    import.meta.jest > All files            |    99.3 |    97.91 |     100 |     100 |
    pcre regex > TOTAL                        18      0   100%

     PASS  test-job
     PASS  import.meta.jest
     PASS  pcre regex
    pipeline finished
    exit=0
    """
        ),
        doc="https://docs.gitlab.com/ci/testing/code_coverage/",
    ),
    "include-local": CaseNote(
        Category.DIVERGENT,
        REF_FEATURE,
        "the include path comes from CI_INCLUDE_LOCAL, set only in gitlab-ci-local's own "
        ".gitlab-ci-local-variables.yml. In GitLab the variable is undefined, `include:local` is "
        "empty and the pipeline is not created.",
        gitlab=REFUSED,
        doc="https://docs.gitlab.com/ci/yaml/includes/#use-variables-with-include",
    ),
    "list-environment": CaseNote(
        Category.DIVERGENT,
        REF_BUG,
        "the reference ignored workflow:rules:variables, expanded environment:name to an empty "
        "string and refused the file. GitLab applies the variables of the matching workflow:rules "
        "entry to the pipeline (workflow:rules:variables), so DEPLOY_ENV is `production` on a branch "
        "pipeline and the three jobs run.",
        gitlab=_run(
            """
    test-job > testing
    build-job > building
    deploy-job > deploying

     PASS  test-job
     PASS  build-job
     PASS  deploy-job
    pipeline finished
    exit=0
    """
        ),
        doc="https://docs.gitlab.com/ci/yaml/#workflowrulesvariables",
    ),
    "workflow-rules-variables": CaseNote(
        Category.DIVERGENT,
        REF_BUG,
        "the reference ignored workflow:rules:variables (printed `WORKFLOW_VAR=`). GitLab applies the "
        "variables of the matching workflow:rules entry; `if: $CI_COMMIT_BRANCH` matches a branch "
        "pipeline.",
        gitlab=_run(
            """
    test-job > WORKFLOW_VAR=from-workflow-rules

     PASS  test-job
    pipeline finished
    exit=0
    """
        ),
        doc="https://docs.gitlab.com/ci/yaml/#workflowrulesvariables",
    ),
    "needs-parallel-matrix-artifacts": CaseNote(
        Category.DIVERGENT,
        REF_FEATURE,
        "gitlab-ci-local copies every job's artifacts into the project folder, so both test jobs saw "
        "both files. In GitLab a job with needs downloads the artifacts of the jobs it needs only, "
        "and the matrix expression selects one build per test job.",
        gitlab=_run(
            """
    test: [aws] > aws-data
    test: [gcp] > gcp-data

     PASS  build: [aws]
     PASS  build: [gcp]
     PASS  test: [aws]
     PASS  test: [gcp]
    pipeline finished
    exit=0
    """
        ),
        doc="https://docs.gitlab.com/ci/yaml/matrix_expressions/",
    ),
    "parallel-matrix-environment": CaseNote(
        Category.DIVERGENT,
        REF_FEATURE,
        "CI_ENVIRONMENT_URL comes from gitlab-ci-local's own .gitlab-ci-local-variables.yml "
        "(environment-scoped values). In GitLab the job sets no environment:url, so the variable is "
        "empty.",
        gitlab=_run(
            """
    run-all-clusters: [cluster-a] > CLUSTER=cluster-a
    run-all-clusters: [cluster-a] > URL=
    run-all-clusters: [cluster-b] > CLUSTER=cluster-b
    run-all-clusters: [cluster-b] > URL=
    run-all-clusters: [cluster-c] > CLUSTER=cluster-c
    run-all-clusters: [cluster-c] > URL=

     PASS  run-all-clusters: [cluster-a]
     PASS  run-all-clusters: [cluster-b]
     PASS  run-all-clusters: [cluster-c]
    pipeline finished
    exit=0
    """
        ),
    ),
    "project-variables-file": CaseNote(
        Category.DIVERGENT,
        REF_FEATURE,
        "KEY, FUNNY3 and the KUBE_*/XDEBUG variables come from gitlab-ci-local's own "
        ".gitlab-ci-local-variables.yml and .gitlab-ci-local-env files; GitLab reads neither, so "
        "they are empty.",
        gitlab=_run(
            """
    test-job > 1
    test-job >
    test-job >
    issue-1508 >
    issue-1508 >
    issue-1508 >

     PASS  test-job
     PASS  issue-1508
    pipeline finished
    exit=0
    """
        ),
    ),
    "artifacts-after-afterscript": CaseNote(
        Category.DIVERGENT,
        REF_BUG,
        "the reference ran after_script somewhere else than script (`rm logs/*badlog` found no file and "
        "it kept no artifact). GitLab runs after_script in a new shell whose working directory is the "
        "job's default one, the project folder where script wrote logs/, so `rm` succeeds silently.",
        gitlab=_run(
            """

     PASS  artifact-job
    pipeline finished
    exit=0
    """
        ),
        doc="https://docs.gitlab.com/ci/yaml/#after_script",
    ),
    "environment": CaseNote(
        Category.DIVERGENT,
        GITLAB_DOC,
        "the reference slugs the environment name as written (`Stage Domain` -> `stage-domain`) and "
        "before expanding variables (`stage-domain-expand-me`). GitLab's CI_ENVIRONMENT_SLUG is at most "
        "24 characters and gets a 6-character suffix when the slug differs from the name (uppercase, "
        'spaces) or is too long; gitlab-org/gitlab#415526: "When using an upper case environment name '
        'like QA, the resulting environment slug will contain a suffix of random characters". The '
        "suffix comes from the name's SHA-256 (Gitlab::Slug::Environment), so it is stable.",
        gitlab=_run(
            """
    deploy-dev-job > Deploy dev something
    deploy-stage-job > Deploy stage something
    deploy-stage-job > stage-domain-ip33nk
    deploy-stage-job > Stage Domain
    deploy-stage-job > http://stage.domain.com
    deploy-stage-job > stop
    deploy-stage-job > production
    deploy-stage-job-with-expansion > Deploy stage something with expansion
    deploy-stage-job-with-expansion > stage-domain-foob-yafktx
    deploy-stage-job-with-expansion > stage-domain-foobar-long-string

     PASS  deploy-dev-job
     PASS  deploy-stage-job
     PASS  deploy-stage-job-with-expansion
    pipeline finished
    exit=0
    """
        ),
        doc="https://docs.gitlab.com/ci/variables/predefined_variables/ (CI_ENVIRONMENT_SLUG); "
        "https://gitlab.com/gitlab-org/gitlab/-/issues/415526",
    ),
    "manual": CaseNote(
        Category.DIVERGENT,
        REF_FEATURE,
        "gitlab-ci-local refuses to start when a job needs a manual job not named with --manual. GitLab "
        "creates the pipeline: pre-job and build-job are manual jobs from rules, where allow_failure "
        'defaults to false, and "It\'s a blocker when it has allow_failure: false" '
        "(gitlab-org/gitlab#382179): test-job waits for pre-job and the later stages wait, so no job "
        "runs and the pipeline is blocked. aicd reports that with exit 0 and each job's status.",
        gitlab=_run(
            """

    pipeline finished
    exit=0
    """
        ),
        doc="https://docs.gitlab.com/ci/jobs/job_control/#types-of-manual-jobs",
    ),
    "needs-parallel-matrix-error": CaseNote(
        Category.DIVERGENT,
        GITLAB_DOC,
        "needs:parallel:matrix names jobs that do not exist (`build-job: [foo]` when build-job has no "
        "matrix, `build-int: [foo]` when build-int has `parallel: 3`, `build-foo: [nope]`); the reference "
        "ignored the selectors. GitLab fails pipeline creation when a needed job is not in the pipeline "
        'and the need is not `optional: true` (gitlab-foss!31761: "we do fail the pipeline creation '
        'if needs: dependency is not found").',
        gitlab=REFUSED,
        doc="https://docs.gitlab.com/ci/yaml/#needsoptional; "
        "https://gitlab.com/gitlab-org/gitlab-foss/-/merge_requests/31761",
    ),
    "needs-parallel-matrix-expressions-non-parallel-consumer": CaseNote(
        Category.DIVERGENT,
        GITLAB_DOC,
        "the consumer has no parallel:matrix, so `$[[ matrix.PROVIDER ]]` has nothing to resolve to; "
        'the reference needed every build. GitLab: "Matrix expressions use the $[[ matrix.IDENTIFIER ]] '
        'syntax to reference a parallel:matrix identifier in job dependencies" and "Matrix identifiers '
        'only: Cannot reference CI/CD variables or inputs." - an identifier the job does not define '
        "resolves to nothing: a configuration error.",
        gitlab=REFUSED,
        doc="https://docs.gitlab.com/ci/yaml/matrix_expressions/",
    ),
    "needs-parallel-matrix-expressions-unknown-identifier": CaseNote(
        Category.DIVERGENT,
        GITLAB_DOC,
        "`$[[ matrix.NOPE ]]` names no identifier of the job's own matrix (PROVIDER); the reference "
        'needed every build. GitLab: "Matrix expressions use the $[[ matrix.IDENTIFIER ]] syntax to '
        'reference a parallel:matrix identifier in job dependencies" - NOPE is none.',
        gitlab=REFUSED,
        doc="https://docs.gitlab.com/ci/yaml/matrix_expressions/",
    ),
    "log-padding": CaseNote(
        Category.DIVERGENT,
        GITLAB_DOC,
        "all four jobs are in stage .pre; the reference ran them. GitLab does not create a pipeline "
        'whose jobs are all in .pre/.post (gitlab-org/gitlab#364242: "In 12.8, we made a change so '
        'that pipelines with only .pre and/or .post stages would not run.").',
        gitlab=_run(
            """

    pipeline finished
    exit=0
    """
        ),
        doc="https://docs.gitlab.com/ci/yaml/#stage-pre; https://gitlab.com/gitlab-org/gitlab/-/issues/364242",
    ),
    "rules-changes": CaseNote(
        Category.DIVERGENT,
        REF_BUG,
        "the reference crashed running `git diff origin/main` in a repository without a remote. GitLab: "
        '"The changes rule always evaluates to true when pushing a new branch or a new tag to GitLab" '
        "(a one-commit branch with nothing to compare to), so both jobs run (image alpine is ignored "
        "by aicd's shell executor).",
        gitlab=_run(
            """
    alpine > Job is running
    matrix: [foo] > Job is running

     PASS  alpine
     PASS  matrix: [foo]
    pipeline finished
    exit=0
    """
        ),
        doc="https://docs.gitlab.com/ci/jobs/job_troubleshooting/ (jobs or pipelines run unexpectedly "
        "when using changes:)",
    ),
}

_STDERR_ORDER = (
    "the job writes to stdout and stderr; the reference read them from two pipes, so the order "
    "between the two streams is not defined: lines are compared as a multiset"
)

OPTIONS: dict[str, CaseOptions] = {
    "plain": CaseOptions(CompareOptions(unordered=frozenset({"test-job"})), _STDERR_ORDER),
    "list-case": CaseOptions(CompareOptions(unordered=frozenset({"test-job"})), _STDERR_ORDER),
    "list-csv-case": CaseOptions(CompareOptions(unordered=frozenset({"test-job"})), _STDERR_ORDER),
    "cache-double-run": CaseOptions(CompareOptions(unordered=frozenset({"test-job"})), _STDERR_ORDER),
    "artifacts-exclude": CaseOptions(
        CompareOptions(skip_output=frozenset({"*"})),
        "the jobs print `ls -laR .`: dates, sizes and .git internals differ by run; the files the "
        "case is about are checked by the job's own `[ -e ... ]` tests",
    ),
    "project-ignores-file": CaseOptions(
        CompareOptions(unordered=frozenset({"test-job"}), drop=re.compile(r"^\./\.git/")),
        "`find .` lists files in directory order and, in the reference, the .git folder's objects "
        "(hashes differ by run): .git lines are dropped and the rest compared as a multiset",
    ),
    "pipeline-iid": CaseOptions(
        CompareOptions(skip_output=frozenset({"test-job"})), "the line holds the pipeline's iid"
    ),
    "predefined-variables": CaseOptions(
        CompareOptions(skip_output=frozenset({"test-job"})), "test-job prints the whole environment"
    ),
}


def note_for(case: str) -> CaseNote:
    return CASES.get(case, CaseNote(Category.AGREE, "", ""))


def options_for(case: str) -> CompareOptions:
    entry = OPTIONS.get(case)
    return entry.compare if entry else CompareOptions()
