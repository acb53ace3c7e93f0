"""The front end's top: resolved YAML -> validated, frozen Pipeline (GitLab semantics)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from aicd.errors import AicdError, PipelineError, WorkflowFilteredOut
from aicd.pipeline import PipelineContext, load_pipeline
from aicd.pipeline.ir import Artifacts, Cache, Environment, Need, Pipeline, Reports, Retry, Trigger, Variable

BRANCH = PipelineContext(
    predefined=(
        Variable("CI_COMMIT_BRANCH", "main", expand=False),
        Variable("CI_COMMIT_REF_NAME", "main", expand=False),
        Variable("CI_DEFAULT_BRANCH", "main", expand=False),
        Variable("CI_PIPELINE_SOURCE", "push", expand=False),
        Variable("CI_PROJECT_PATH", "group/project", expand=False),
    )
)


def _ctx(**extra: str) -> PipelineContext:
    return PipelineContext(
        predefined=BRANCH.predefined, variables=tuple(Variable(k, v) for k, v in extra.items())
    )


def load(tmp_path: Path, text: str, context: PipelineContext = BRANCH) -> Pipeline:
    (tmp_path / ".gitlab-ci.yml").write_text(textwrap.dedent(text))
    return load_pipeline(tmp_path, ".gitlab-ci.yml", context)


def errors(tmp_path: Path, text: str, context: PipelineContext = BRANCH) -> list[str]:
    (tmp_path / ".gitlab-ci.yml").write_text(textwrap.dedent(text))
    with pytest.raises(PipelineError) as info:
        load_pipeline(tmp_path, ".gitlab-ci.yml", context)
    found = [str(d) for d in info.value.diagnostics]
    assert all(d.line > 0 and d.file for d in info.value.diagnostics), found
    return found


def vars_of(pipeline: Pipeline, job: str) -> list[tuple[str, str]]:
    return [(v.key, v.value) for v in pipeline.job(job).variables]


# -- stages ------------------------------------------------------------------------------------


def test_default_stages_and_default_job_stage(tmp_path: Path) -> None:
    p = load(tmp_path, "a:\n  script: echo\n")
    assert p.stages == (".pre", "build", "test", "deploy", ".post")
    assert p.job("a").stage == "test"


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        ("[one, two]", (".pre", "one", "two", ".post")),
        ("[.post, one, .pre]", (".pre", "one", ".post")),
        ("[one, one, two]", (".pre", "one", "two", ".post")),
    ],
)
def test_user_stages_keep_pre_and_post_at_the_ends(
    tmp_path: Path, stages: str, expected: tuple[str, ...]
) -> None:
    p = load(tmp_path, f"stages: {stages}\na:\n  stage: one\n  script: echo\n")
    assert p.stages == expected


def test_types_is_the_deprecated_alias_of_stages(tmp_path: Path) -> None:
    p = load(tmp_path, "types: [one]\na:\n  type: one\n  script: echo\n")
    assert p.stages == (".pre", "one", ".post") and p.job("a").stage == "one"
    assert any("types is deprecated" in w for w in p.warnings)


def test_jobs_are_listed_in_stage_order_then_file_order(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        """
        deploy-job: {stage: deploy, script: echo}
        test-a: {script: echo}
        pre-job: {stage: .pre, script: echo}
        build-job: {stage: build, script: echo}
        test-b: {script: echo}
        """,
    )
    assert [j.name for j in p.jobs] == ["pre-job", "build-job", "test-a", "test-b", "deploy-job"]


def test_unknown_stage_lists_the_stages(tmp_path: Path) -> None:
    (err,) = errors(tmp_path, "stages: [build, test]\na:\n  stage: tset\n  script: echo\n")
    assert err.startswith(".gitlab-ci.yml:3:3: ")
    assert 'stage "tset" is not one of the stages: .pre, build, test, .post (did you mean "test"?)' in err


def test_stages_must_be_a_list(tmp_path: Path) -> None:
    (err,) = errors(tmp_path, "stages: test\na:\n  script: echo\n")
    assert err.startswith(".gitlab-ci.yml:1:1: stages must be a list of strings")


# -- scripts -----------------------------------------------------------------------------------


def test_scripts_string_list_and_nested_lists_are_flattened(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        """
        .common: &common [echo one, [echo two]]
        a:
          before_script: echo before
          script:
            - *common
            - [[echo three]]
            - |
              multi
              line
          after_script: [echo after]
        """,
    )
    a = p.job("a")
    assert a.before_script == ("echo before",)
    assert a.script == ("echo one", "echo two", "echo three", "multi\nline\n")
    assert a.after_script == ("echo after",)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("stage: test", "has no script: add `script:`"),
        ("script: []", "script is empty"),
        ("script: ''", "script must not be empty"),
        ("script: 3", "script must be a string or a list of strings, got a number (3)"),
        ("script: [echo: hi]", "script[0] is a mapping, not a command: quote the line"),
        ("script: [1]", "script[0] must be a string (a command), got a number (1)"),
        ("script: [[[[[[[[[[[echo]]]]]]]]]]]", "nests lists more than 10 levels deep"),
        ("script: echo\n  before_script: {a: 1}", "before_script must be a string or a list of strings"),
    ],
)
def test_bad_scripts(tmp_path: Path, body: str, fragment: str) -> None:
    found = errors(tmp_path, f"job:\n  {body}\n")
    assert any(fragment in e and 'job "job"' in e for e in found), found


# -- keywords --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("scirpt: echo", 'unknown keyword "scirpt" (did you mean "script"?)'),
        ("stages: [a]", 'unknown keyword "stages" (did you mean "stage"?)'),
        ("include: x.yml", 'unknown keyword "include" (include is a top-level keyword'),
        ("data: x", 'unknown keyword "data"'),
        ("stage: [a]", "stage must be a string, got a list"),
        (
            "when: manual2",
            'when must be one of on_success, on_failure, always, manual, delayed, got "manual2"',
        ),
        ("when: never", "when: never can only be used in rules"),
        ("when: delayed", "when: delayed needs start_in"),
        ("start_in: 5 minutes", "start_in can only be used with when: delayed"),
        ("when: delayed\n  start_in: 2 weeks", "start_in must be at most one week"),
        ("when: delayed\n  start_in: soon", "start_in is not a duration"),
        ("allow_failure: maybe", "allow_failure must be true, false or {exit_codes: [...]}"),
        ("allow_failure: {exit_codes: x}", "allow_failure:exit_codes must be a whole number from 0 to 255"),
        ("allow_failure: {codes: 1}", 'unknown keyword "codes" in allow_failure'),
        ("retry: 3", "retry must be a whole number from 0 to 2, got 3"),
        ("retry: {max: 1, when: script_falure}", '(did you mean "script_failure"?)'),
        ("retry: {max: 1, whne: always}", 'unknown keyword "whne" in retry (did you mean "when"?)'),
        ("retry: yes", "retry must be a number from 0 to 2 or a mapping"),
        ("timeout: forever", "timeout is not a duration"),
        ("timeout: 0", "timeout must be longer than zero"),
        ("interruptible: 1", "interruptible must be true or false, got a number (1)"),
        ("resource_group: ''", "resource_group must not be empty"),
        ("coverage: 'Total: (\\d+)'", "coverage must be a regular expression between slashes"),
        ("coverage: '/(unclosed/'", 'coverage "/(unclosed/" is not a valid regular expression'),
        ("tags: docker", "tags must be a list of strings, got a string"),
        ("image: [a]", "image must be an image name or a mapping with a name"),
        ("image: {entrypoint: ['']}", "image needs a name"),
        ("services: nginx", "services must be a list of images"),
        ("variables: [A]", "variables must be a mapping (key: value), got a list"),
        ("variables: {A: [1]}", "variables:A must be a string, a number or a mapping with 'value'"),
        ("variables: {A: {value: x, description: d}}", 'unknown keyword "description" in variable "A"'),
        ("variables: {A: {value: x, expand: no2}}", "variables:A:expand must be true or false"),
        ("inherit: {variables: maybe}", "inherit:variables must be true or false"),
        ("inherit: {default: [imgae]}", '"imgae" is not a default keyword (did you mean "image"?)'),
        ("inherit: {vars: false}", 'unknown keyword "vars" in inherit (did you mean "variables"?)'),
        ("dependencies: a", "dependencies must be a list of job names, got a string"),
        ("environment: {url: http://x}", "environment needs a name"),
        ("environment: {name: x, action: deploy}", "environment:action must be one of start, prepare, stop"),
        ("environment: {name: x, deployment_tier: prodution}", '(did you mean "production"?)'),
        ("environment: {name: x, on_stop: stop-x}", 'environment:on_stop names "stop-x", which is not a job'),
        ("environment: {name: x, auto_stop_in: 1 fortnight}", "environment:auto_stop_in is not a duration"),
        ("artifacts: [a]", "artifacts must be a mapping"),
        ("artifacts: {paths: a}", "artifacts:paths must be a list of strings, got a string"),
        ("artifacts: {when: sometimes}", "artifacts:when must be one of on_success, on_failure, always"),
        ("artifacts: {expire_in: 1 eon}", "artifacts:expire_in is not a duration"),
        ("artifacts: {reports: {junit: 3}}", "artifacts:reports:junit must be a string or a list of strings"),
        (
            "artifacts: {reports: {junt: a.xml}}",
            'unknown keyword "junt" in artifacts:reports (did you mean "junit"?)',
        ),
        ("artifacts: {access: everyone}", "artifacts:access must be one of all, developer"),
        ("artifacts: {pahts: [a]}", 'unknown keyword "pahts" in artifacts (did you mean "paths"?)'),
        ("cache: {paths: folder}", "cache:paths must be a list of strings, got a string"),
        (
            "cache: {policy: pul}",
            'cache:policy must be one of pull-push, pull, push, got "pul" (did you mean "pull"?)',
        ),
        ("cache: {key: a/b}", 'cache:key "a/b" cannot contain "/"'),
        ("cache: {key: {prefix: x}}", "cache:key needs files"),
        ("cache: {key: {files: [a, b, c]}}", "cache:key:files must list 1 or 2 files, got 3"),
        ("cache: {when: never}", "cache:when must be one of on_success, on_failure, always"),
        ("cache: [{}, {}, {}, {}, {}]", "cache has 5 entries; GitLab allows at most 4"),
        (
            "cache: {fallback_keys: [a, b, c, d, e, f]}",
            "cache:fallback_keys has 6 keys; GitLab allows at most 5",
        ),
        ("parallel: 0", "parallel must be a whole number from 1 to 200, got 0"),
        ("needs: build", "needs must be a list of job names, like needs: [build], got a string"),
        ("needs: [~]", "needs[0] must be a job name or a mapping with job, got empty (null)"),
        ("needs: [{artifacts: false}]", "needs[0] needs a job"),
        (
            "needs: [{job: other, optinal: true}]",
            'unknown keyword "optinal" in needs (did you mean "optional"?)',
        ),
        ("only: [main]\n  rules: [{when: always}]", "only cannot be used with rules"),
        ("only: {refs: [main], variables: ['$A ==']}", "is not a valid expression"),
        ("only: {refs: ['/(a/']}", "is not a valid regular expression"),
        ("trigger: 5", "trigger must be a project path or a mapping"),
    ],
)
def test_every_keyword_is_type_checked(tmp_path: Path, body: str, fragment: str) -> None:
    found = errors(tmp_path, f"other:\n  script: echo\njob:\n  script: echo\n  {body}\n")
    assert any(fragment in e for e in found), found
    for e in found:
        assert e.startswith(".gitlab-ci.yml:") and e.split(":")[1].isdigit()


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        """
        a:
          script: echo
          when: sometimes
        b:
          stage: nowhere
          script: echo
        c:
          needs: [zzz]
          script: echo
        d: not-a-job
        """,
    )
    assert len(found) == 4, found
    assert [e.split(":")[1] for e in found] == sorted((e.split(":")[1] for e in found), key=int)


def test_job_must_be_a_mapping_with_hint_for_misspelt_keywords(tmp_path: Path) -> None:
    found = errors(tmp_path, "stage: [a, b]\nvariable:\n  - X\nok:\n  script: echo\n")
    assert any('"stage" is not a top-level keyword (did you mean "stages"?)' in e for e in found), found
    assert any('"variable" is not a top-level keyword (did you mean "variables"?)' in e for e in found), found


def test_a_file_without_jobs_is_an_error(tmp_path: Path) -> None:
    (err,) = errors(tmp_path, "variables: {A: 1}\n.hidden:\n  script: echo\n")
    assert "defines no job" in err


def test_job_name_longer_than_255_is_an_error(tmp_path: Path) -> None:
    found = errors(tmp_path, f"{'j' * 256}:\n  script: echo\n")
    assert any("GitLab allows 255" in e for e in found)


def test_typed_values_reach_the_ir(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        """
        stop-review: {stage: deploy, script: echo, environment: {name: review, action: stop}, when: manual}
        job:
          stage: deploy
          script: echo
          retry: {max: 2, when: [script_failure, api_failure], exit_codes: 137}
          timeout: 1h 30m
          interruptible: true
          resource_group: production
          coverage: '/Total: (\\d+)%/'
          tags: [docker, linux]
          allow_failure: {exit_codes: [3, 4]}
          environment:
            name: review/$CI_COMMIT_REF_SLUG
            url: https://example.com
            on_stop: stop-review
            auto_stop_in: 1 week
            deployment_tier: staging
          artifacts:
            paths: [dist/]
            exclude: [dist/*.tmp]
            when: always
            expire_in: 1 week
            name: build-$CI_JOB_NAME
            untracked: true
            reports:
              junit: [a.xml, b.xml]
              dotenv: build.env
              metrics: metrics.txt
              codequality: gl-code-quality.json
              coverage_report: {coverage_format: cobertura, path: coverage.xml}
          cache:
            - key: {files: [package-lock.json], prefix: npm}
              paths: [node_modules/]
              policy: pull
              when: always
              fallback_keys: [main-cache]
              unprotect: true
            - key: global
              paths: [global/]
        """,
    )
    job = p.job("job")
    assert job.retry == Retry(max=2, when=("script_failure", "api_failure"), exit_codes=(137,))
    assert job.timeout_s == 5400
    assert job.interruptible and job.resource_group == "production"
    assert job.coverage == "/Total: (\\d+)%/"
    assert job.tags == ("docker", "linux")
    assert (job.allow_failure, job.allow_failure_exit_codes) == (True, (3, 4))
    assert job.environment == Environment(
        name="review/$CI_COMMIT_REF_SLUG",
        url="https://example.com",
        on_stop="stop-review",
        auto_stop_in="1 week",
        deployment_tier="staging",
    )
    assert job.artifacts == Artifacts(
        paths=("dist/",),
        exclude=("dist/*.tmp",),
        untracked=True,
        when="always",
        expire_in="1 week",
        name="build-$CI_JOB_NAME",
        reports=Reports(
            junit=("a.xml", "b.xml"),
            dotenv=("build.env",),
            metrics=("metrics.txt",),
            other=("gl-code-quality.json", "coverage.xml"),
        ),
    )
    assert job.cache == (
        Cache(
            key="default",
            key_files=("package-lock.json",),
            key_prefix="npm",
            paths=("node_modules/",),
            policy="pull",
            when="always",
            fallback_keys=("main-cache",),
        ),
        Cache(key="global", paths=("global/",)),
    )
    assert p.job("stop-review").environment == Environment(name="review", action="stop")
    assert job.location.file == ".gitlab-ci.yml" and job.location.line == 3


def test_retry_as_a_number_and_environment_as_a_string(tmp_path: Path) -> None:
    p = load(tmp_path, "a:\n  script: echo\n  retry: 1\n  environment: production\n  cache: {}\n")
    a = p.job("a")
    assert a.retry == Retry(max=1) and a.environment == Environment(name="production")
    assert a.cache == (Cache(),)


def test_cache_policy_from_a_variable_is_expanded(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        """
        a:
          script: echo
          rules:
            - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH
              variables: {POLICY: pull-push}
            - variables: {POLICY: pull}
          cache: {key: $CI_COMMIT_REF_SLUG, policy: $POLICY}
        """,
    )
    assert p.job("a").cache == (Cache(key="$CI_COMMIT_REF_SLUG", policy="pull-push"),)
    found = errors(tmp_path, "a:\n  script: echo\n  variables: {P: all}\n  cache: {policy: $P}\n")
    assert any('"$P" expands to "all", which is not one of pull-push, pull, push' in e for e in found)


def test_deprecated_top_level_globals_apply_like_default(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        """
        before_script: [echo global-before]
        cache: {paths: [vendor/]}
        a: {script: echo}
        b: {script: echo, before_script: [echo own]}
        c: {script: echo, inherit: {default: false}}
        """,
    )
    assert p.job("a").before_script == ("echo global-before",)
    assert p.job("a").cache == (Cache(paths=("vendor/",)),)
    assert p.job("b").before_script == ("echo own",)
    assert p.job("c").before_script == () and p.job("c").cache == ()


# -- variables -------------------------------------------------------------------------------


def test_variable_values_become_strings_as_gitlab_does(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        """
        variables:
          NUM: 1
          FLOAT: 1.5
          BOOL: true
          NULL_VAR:
          FULL: {value: x, description: shown in the run form, options: [x, y]}
          RAW: {value: $NOT_EXPANDED, expand: false}
        job:
          variables: {JOB: j, EMPTY: ~}
          script: echo
        """,
    )
    assert vars_of(p, "job") == [
        ("NUM", "1"),
        ("FLOAT", "1.5"),
        ("BOOL", "true"),
        ("NULL_VAR", ""),
        ("FULL", "x"),
        ("RAW", "$NOT_EXPANDED"),
        ("JOB", "j"),
        ("EMPTY", ""),
    ]
    raw = next(v for v in p.job("job").variables if v.key == "RAW")
    assert raw.expand is False


def test_variable_value_must_be_one_of_its_options(tmp_path: Path) -> None:
    found = errors(tmp_path, "variables:\n  ENV: {value: qa, options: [dev, prod]}\na: {script: echo}\n")
    assert any('"qa" must be one of its options: dev, prod' in e for e in found)


def test_inherit_variables_false_and_list(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        """
        variables: {G1: a, G2: b, G3: c}
        none: {script: echo, inherit: {variables: false}, variables: {OWN: x}}
        some: {script: echo, inherit: {variables: [G1, G3]}}
        all: {script: echo}
        """,
    )
    assert vars_of(p, "none") == [("OWN", "x")]
    assert vars_of(p, "some") == [("G1", "a"), ("G3", "c")]
    assert vars_of(p, "all") == [("G1", "a"), ("G2", "b"), ("G3", "c")]


def test_variable_order_global_workflow_job_rule(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        """
        variables: {X: global}
        workflow:
          rules:
            - if: $CI_COMMIT_BRANCH
              variables: {X: workflow, W: w}
        job:
          variables: {X: job}
          rules:
            - if: $W == "w" && $X == "cli"
              variables: {X: rule}
          script: echo
        """,
        _ctx(X="cli"),
    )
    assert vars_of(p, "job") == [("X", "global"), ("X", "workflow"), ("W", "w"), ("X", "job"), ("X", "rule")]
    assert [(v.key, v.value) for v in p.variables] == [("X", "cli")]
    assert p.predefined == BRANCH.predefined


# -- rules, when, allow_failure ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "when", "allow_failure"),
    [
        ("when: manual", "manual", True),
        ("when: manual\n  allow_failure: false", "manual", False),
        ("rules: [{when: manual}]", "manual", False),
        ("rules: [{when: manual, allow_failure: true}]", "manual", True),
        ("allow_failure: true\n  rules: [{when: on_success}]", "on_success", True),
        ("when: always", "always", False),
        ("when: on_failure", "on_failure", False),
        ("rules: [{if: $CI_COMMIT_BRANCH == 'main', when: always}]", "always", False),
        ("rules: [{if: $NOPE}, {when: on_failure}]", "on_failure", False),
        # GitLab issue 362225: the job-level when: manual decides (the rule has no when, or repeats it)
        ("when: manual\n  rules: [{if: $CI_COMMIT_BRANCH}]", "manual", True),
        ("when: manual\n  rules: [{if: $CI_COMMIT_BRANCH, when: manual}]", "manual", True),
        ("when: manual\n  allow_failure: false\n  rules: [{if: $CI_COMMIT_BRANCH}]", "manual", False),
        ("when: manual\n  rules: [{if: $CI_COMMIT_BRANCH, allow_failure: false}]", "manual", False),
        ("when: manual\n  rules: [{if: $CI_COMMIT_BRANCH, when: on_success}]", "on_success", False),
    ],
)
def test_when_and_allow_failure_defaults(tmp_path: Path, body: str, when: str, allow_failure: bool) -> None:
    job = load(tmp_path, f"job:\n  script: echo\n  {body}\n").job("job")
    assert (job.when, job.allow_failure) == (when, allow_failure)


def test_delayed_job_start_in(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        """
        a: {script: echo, when: delayed, start_in: 30 minutes}
        b: {script: echo, rules: [{when: delayed, start_in: 1 hour}]}
        """,
    )
    assert (p.job("a").when, p.job("a").start_in_s) == ("delayed", 1800)
    assert (p.job("b").when, p.job("b").start_in_s) == ("delayed", 3600)


def test_rules_exclude_jobs_and_record_why(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        """
        kept: {script: echo, rules: [{if: $CI_COMMIT_BRANCH == "main"}]}
        nomatch: {script: echo, rules: [{if: $CI_COMMIT_TAG}]}
        never: {script: echo, rules: [{if: $CI_COMMIT_BRANCH, when: never}, {when: always}]}
        empty: {script: echo, rules: []}
        """,
    )
    assert [j.name for j in p.jobs] == ["kept"]
    reasons = dict(p.excluded)
    assert reasons["nomatch"] == "no rule matched"
    assert reasons["never"] == "rules[0] is when: never"
    assert "empty" in reasons


def test_rules_see_job_and_pipeline_variables(tmp_path: Path) -> None:
    text = """
    variables: {LEVEL: global}
    job:
      variables: {KIND: job}
      rules:
        - if: $KIND == "job" && $LEVEL == "cli"
      script: echo
    """
    assert [j.name for j in load(tmp_path, text, _ctx(LEVEL="cli")).jobs] == ["job"]
    assert [
        j.name for j in load(tmp_path, text.replace("job:\n      rules", "job:\n      rules"), _ctx()).jobs
    ] == []


def test_rules_interruptible_and_needs_override(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        """
        stages: [build, test]
        build-dev: {stage: build, script: echo}
        build-prod: {stage: build, script: echo}
        test:
          stage: test
          script: echo
          needs: [build-dev]
          rules:
            - if: $CI_COMMIT_BRANCH == "main"
              needs: [build-prod]
              interruptible: true
        """,
    )
    job = p.job("test")
    assert job.needs == (Need("build-prod"),) and job.interruptible


def test_bad_rules_are_located(tmp_path: Path) -> None:
    found = errors(tmp_path, "job:\n  script: echo\n  rules:\n    - if: $A ==\n    - when: sometimes\n")
    assert len(found) == 2
    assert found[0].startswith(".gitlab-ci.yml:4:") and found[1].startswith(".gitlab-ci.yml:5:")


# -- only / except -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "included"),
    [
        ("only: [main]", True),
        ("only: [develop]", False),
        ("only: [branches]", True),
        ("only: [tags]", False),
        ("only: ['/^ma/']", True),
        ("only: ['/^release-.*$/']", False),
        ("only: [pushes]", True),
        ("only: [schedules]", False),
        ("only: ['main@group/project']", True),
        ("only: ['main@other/project']", False),
        ("except: [main]", False),
        ("except: [tags]", True),
        ("only: {variables: ['$CI_COMMIT_BRANCH == \"main\"']}", True),
        ("only: {variables: ['$RELEASE']}", False),
        ("only: {refs: [main], variables: ['$RELEASE']}", False),
        ("except: {variables: ['$CI_COMMIT_BRANCH']}", False),
        ("only: {changes: ['src/**/*']}", True),
    ],
)
def test_only_and_except(tmp_path: Path, condition: str, included: bool) -> None:
    p = load(tmp_path, f"job:\n  script: echo\n  {condition}\nother: {{script: echo}}\n")
    assert ("job" in [j.name for j in p.jobs]) is included


def test_only_changes_uses_changed_files(tmp_path: Path) -> None:
    text = "job:\n  script: echo\n  only:\n    changes: ['src/**/*.py']\nother: {script: echo}\n"
    ctx = PipelineContext(predefined=BRANCH.predefined, changed_files=("docs/x.md",))
    assert [j.name for j in load(tmp_path, text, ctx).jobs] == ["other"]
    ctx = PipelineContext(predefined=BRANCH.predefined, changed_files=("src/a/b.py",))
    assert [j.name for j in load(tmp_path, text, ctx).jobs] == ["job", "other"]


def test_only_kubernetes_is_a_warning(tmp_path: Path) -> None:
    p = load(tmp_path, "job:\n  script: echo\n  only: {kubernetes: active}\n")
    assert [j.name for j in p.jobs] == ["job"]
    assert any(
        "kubernetes is not known locally" in w and w.startswith(".gitlab-ci.yml:3:") for w in p.warnings
    )


def test_jobs_without_rules_do_not_run_in_merge_request_pipelines(tmp_path: Path) -> None:
    ctx = PipelineContext(predefined=(Variable("CI_PIPELINE_SOURCE", "merge_request_event"),))
    p = load(tmp_path, "a: {script: echo}\nb: {script: echo, only: [merge_requests]}\n", ctx)
    assert [j.name for j in p.jobs] == ["b"]


# -- workflow ----------------------------------------------------------------------------------


def test_workflow_rules_filter_out_the_pipeline(tmp_path: Path) -> None:
    text = "workflow:\n  rules:\n    - if: $CI_COMMIT_TAG\na: {script: echo}\n"
    with pytest.raises(WorkflowFilteredOut):
        load(tmp_path, text)
    assert issubclass(WorkflowFilteredOut, AicdError)


def test_workflow_name_is_expanded(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        """
        variables: {KIND: nightly}
        workflow:
          name: '$KIND build of $CI_COMMIT_BRANCH ($EXTRA)'
          rules:
            - if: $CI_COMMIT_BRANCH
              variables: {EXTRA: from-rule}
        a: {script: echo}
        """,
    )
    assert p.name == "nightly build of main (from-rule)"


def test_workflow_unknown_key_and_bad_when(tmp_path: Path) -> None:
    found = errors(tmp_path, "workflow:\n  rulez: []\na: {script: echo}\n")
    assert any('unknown keyword "rulez" in workflow (did you mean "rules"?)' in e for e in found)
    found = errors(tmp_path, "workflow:\n  rules: [{when: manual}]\na: {script: echo}\n")
    assert any("when must be always or never" in e for e in found)


# -- needs and dependencies ----------------------------------------------------------------------


def test_needs_forms(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        """
        build: {stage: build, script: echo}
        lint: {stage: build, script: echo}
        test:
          script: echo
          needs: [build, {job: lint, artifacts: false}, {job: ghost, optional: true}, build]
        free: {stage: deploy, script: echo, needs: []}
        staged: {stage: deploy, script: echo}
        """,
    )
    assert p.job("test").needs == (Need("build"), Need("lint", artifacts=False))
    assert p.job("free").needs == ()
    assert p.job("staged").needs is None
    assert any('needs "ghost" (optional), which is not a job' in w for w in p.warnings)


def test_unknown_need_suggests_the_closest_job(tmp_path: Path) -> None:
    (err,) = errors(
        tmp_path, "build:\n  stage: build\n  script: echo\ntest:\n  script: echo\n  needs: [biuld]\n"
    )
    assert err == '.gitlab-ci.yml:6:11: job "test": needs "biuld", which is not a job (did you mean "build"?)'


def test_need_on_a_job_left_out_by_rules(tmp_path: Path) -> None:
    text = """
    skipped: {stage: build, script: echo, rules: [{when: never}]}
    strict: {script: echo, needs: [skipped]}
    lenient: {script: echo, needs: [{job: skipped, optional: true}]}
    """
    found = errors(tmp_path, text)
    assert len(found) == 1 and 'job "strict": needs "skipped", but rules leave it out' in found[0]
    p = load(tmp_path, text.replace("    strict: {script: echo, needs: [skipped]}\n", ""))
    assert p.job("lenient").needs == ()


def test_need_on_a_later_stage_and_on_itself(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        """
        test-job: {stage: test, script: echo}
        build-job: {stage: build, script: echo, needs: [test-job]}
        self: {script: echo, needs: [self]}
        """,
    )
    assert any(
        'needs "test-job", which is in a later stage ("test") than this job ("build")' in e for e in found
    )
    assert any('job "self": needs itself' in e for e in found)


def test_needs_in_the_same_stage_are_allowed(tmp_path: Path) -> None:
    p = load(tmp_path, "a: {script: echo, needs: [b]}\nb: {script: echo}\n")
    assert p.job("a").needs == (Need("b"),)


def test_needs_cycle_is_named(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        "a: {script: echo, needs: [b]}\nb: {script: echo, needs: [c]}\nc: {script: echo, needs: [a]}\n",
    )
    assert len(found) == 1
    assert "form a cycle: " in found[0]
    cycle = found[0].split("form a cycle: ")[1].split(";")[0].split(" -> ")
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}


def test_at_most_fifty_needs(tmp_path: Path) -> None:
    jobs = "".join(f"b{i}: {{stage: build, script: echo}}\n" for i in range(51))
    names = ", ".join(f"b{i}" for i in range(51))
    found = errors(tmp_path, f"{jobs}t:\n  script: echo\n  needs: [{names}]\n")
    assert any("lists 51 jobs; GitLab allows at most 50 needs" in e for e in found)


def test_cross_pipeline_needs_are_ignored_with_a_warning(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        """
        a:
          script: echo
          needs:
            - {project: group/other, job: build, ref: main}
            - {pipeline: $PARENT_PIPELINE_ID, job: gen}
        """,
    )
    assert p.job("a").needs == ()
    assert sum("not available locally" in w for w in p.warnings) == 2


def test_dependencies(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        """
        one: {stage: build, script: echo}
        two: {stage: build, script: echo, parallel: 2}
        skipped: {stage: build, script: echo, rules: [{when: never}]}
        a: {script: echo, dependencies: [one, two, skipped]}
        b: {script: echo, dependencies: []}
        c: {script: echo}
        d: {script: echo, needs: [one], dependencies: [one]}
        e: {stage: deploy, script: echo, needs: [], dependencies: [one]}
        """,
    )
    assert p.job("a").dependencies == ("one", "two 1/2", "two 2/2")
    assert p.job("b").dependencies == ()
    assert p.job("c").dependencies is None
    assert p.job("d").dependencies == ("one",)
    assert p.job("e").dependencies == ("one",)


@pytest.mark.parametrize(
    ("job", "fragment"),
    [
        ("t: {script: echo, dependencies: [invalid]}", 'dependencies: "invalid" is not a job'),
        ("t: {script: echo, dependencies: [bulid]}", '(did you mean "build"?)'),
        (
            "t: {stage: build, script: echo, dependencies: [later]}\nlater: {stage: deploy, script: echo}",
            'dependencies: "later" is in stage "deploy", a later stage than "build"',
        ),
        (
            "t: {script: echo, needs: [build], dependencies: [same]}",
            'dependencies: "same" must also be in needs',
        ),
    ],
)
def test_bad_dependencies(tmp_path: Path, job: str, fragment: str) -> None:
    found = errors(
        tmp_path, f"build: {{stage: build, script: echo}}\nsame: {{stage: build, script: echo}}\n{job}\n"
    )
    assert any(fragment in e for e in found), found


# -- warnings --------------------------------------------------------------------------------


def test_one_warning_names_the_jobs_using_images(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        """
        default: {image: python:3.11}
        a: {script: echo}
        b: {script: echo, image: {name: alpine, entrypoint: ['']}, services: [postgres, {name: redis}]}
        """,
    )
    assert p.job("b").image == "alpine" and p.job("b").services == ("postgres", "redis")
    image_warnings = [w for w in p.warnings if "ignored: aicd runs jobs in the local shell" in w]
    assert image_warnings == [
        "image and services are ignored: aicd runs jobs in the local shell (jobs: a, b)"
    ]


def test_trigger_jobs_are_left_out_with_a_warning(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        """
        build: {stage: build, script: echo}
        child: {trigger: {include: child.yml}}
        after: {stage: deploy, script: echo, needs: [child, build]}
        """,
    )
    assert [j.name for j in p.jobs] == ["build", "after"]
    assert p.job("after").needs == (Need("build"),)
    assert ("child", "child pipelines are run by `aicd run` only") in p.excluded
    assert any("child pipelines are run by `aicd run` only" in w for w in p.warnings)


def test_trigger_jobs_of_local_child_pipelines_are_jobs_for_aicd_run(tmp_path: Path) -> None:
    context = PipelineContext(predefined=BRANCH.predefined, child_pipelines=True)
    p = load(
        tmp_path,
        """
        build: {stage: build, script: echo}
        child:
          stage: deploy
          trigger: {include: [{local: /ci/child.yml}], strategy: depend, forward: {pipeline_variables: true}}
        other: {stage: deploy, trigger: group/other}
        dynamic: {stage: deploy, trigger: {include: [{artifact: gen.yml, job: build}]}}
        two: {stage: deploy, trigger: {include: [{artifact: a.yml, job: build}, {local: b.yml}]}}
        after: {stage: deploy, script: echo, needs: [child]}
        """,
        context,
    )
    assert [j.name for j in p.jobs] == ["build", "child", "dynamic", "after"]
    assert p.job("child").trigger == Trigger("ci/child.yml", "depend", True, True)
    assert p.job("dynamic").trigger == Trigger("gen.yml", None, True, False, artifact_job="build")
    assert p.job("after").needs == (Need("child"),)
    assert dict(p.excluded) == {
        "other": "multi-project pipelines are out of scope",
        "two": "dynamic child pipelines from several files are not supported",
    }
    assert any("multi-project pipelines (trigger: project) are out of scope" in w for w in p.warnings)
    assert Pipeline.from_json(p.to_json()) == p


@pytest.mark.parametrize(
    ("trigger", "fragment"),
    [
        ("{include: a.yml, strategy: wait}", "strategy must be one of depend"),
        ("{include: a.yml, forward: {yaml_vars: true}}", 'unknown keyword "yaml_vars" in forward'),
        ("{strategy: depend}", "needs include (a child pipeline) or project"),
        ("[a.yml]", "must be a project path or a mapping, got a list"),
    ],
)
def test_bad_trigger(tmp_path: Path, trigger: str, fragment: str) -> None:
    found = errors(tmp_path, f"a: {{script: echo}}\nchild: {{trigger: {trigger}}}\n")
    assert any(fragment in e for e in found), found


def test_ignored_keywords_are_named_once(tmp_path: Path) -> None:
    p = load(tmp_path, "a: {script: echo, secrets: {X: {vault: a/b}}}\nb: {script: echo, secrets: {}}\n")
    assert [w for w in p.warnings if "secrets" in w] == [
        "secrets is not supported locally and is ignored (jobs: a, b)"
    ]


def test_pipeline_is_frozen_and_serialisable(tmp_path: Path) -> None:
    p = load(tmp_path, "a:\n  script: echo\n  parallel: {matrix: [{X: [1, 2]}]}\n")
    assert Pipeline.from_json(p.to_json()) == p
    with pytest.raises(AttributeError):
        p.jobs[0].name = "x"  # type: ignore[misc]


def test_allow_failure_exit_codes_and_rules(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        """
        codes: {script: exit 3, allow_failure: {exit_codes: [1, 3]}}
        rule-false:
          script: exit 137
          allow_failure: {exit_codes: 137}
          rules: [{if: $CI_COMMIT_BRANCH, allow_failure: false}]
        rule-silent:
          script: exit 137
          allow_failure: {exit_codes: 137}
          rules: [{when: always}]
        """,
    )
    assert (p.job("codes").allow_failure, p.job("codes").allow_failure_exit_codes) == (True, (1, 3))
    assert p.job("rule-false").allow_failure is False
    assert (p.job("rule-silent").allow_failure, p.job("rule-silent").allow_failure_exit_codes) == (
        True,
        (137,),
    )


def test_matrix_job_names_longer_than_255_are_refused(tmp_path: Path) -> None:
    long_value = "x" * 300
    found = errors(
        tmp_path, f"job:\n  script: echo\n  parallel:\n    matrix:\n      - A: [{long_value}, short]\n"
    )
    assert len(found) == 1
    assert found[0].startswith(".gitlab-ci.yml:3:3: ") and "GitLab allows 255" in found[0]


def test_only_pre_and_post_jobs_make_no_pipeline(tmp_path: Path) -> None:
    from aicd.errors import WorkflowFilteredOut
    from aicd.pipeline import load_pipeline

    (tmp_path / ".gitlab-ci.yml").write_text(
        "a:\n  stage: .pre\n  script: [echo]\nb:\n  stage: .post\n  script: [echo]\n"
    )
    with pytest.raises(WorkflowFilteredOut, match=r"only \.pre/\.post"):
        load_pipeline(tmp_path)
    (tmp_path / ".gitlab-ci.yml").write_text("a:\n  stage: .pre\n  script: [echo]\nc:\n  script: [echo]\n")
    assert [j.name for j in load_pipeline(tmp_path).jobs] == ["a", "c"]


@pytest.mark.parametrize(
    ("retry", "when"),
    [
        ("{max: 2, exit_codes: [3]}", ()),  # exit codes only
        ("{max: 2, when: always, exit_codes: [3]}", ("always",)),
        ("{max: 2}", ("always",)),
        ("2", ("always",)),
    ],
)
def test_retry_exit_codes_without_when_mean_exit_codes_only(
    tmp_path: Path, retry: str, when: tuple[str, ...]
) -> None:
    (tmp_path / ".gitlab-ci.yml").write_text(f"j:\n  retry: {retry}\n  script: [echo]\n")
    assert load_pipeline(tmp_path).jobs[0].retry.when == when
