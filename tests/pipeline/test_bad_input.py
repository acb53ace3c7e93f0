"""The worst input: every malformed pipeline gives located diagnostics, never a traceback.

`load_pipeline` may only raise PipelineError (or another AicdError); `lint_pipeline`
never raises. Each case names a fragment the message must contain.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aicd.errors import AicdError, PipelineError
from aicd.pipeline import PipelineContext, lint_pipeline, load_pipeline
from aicd.pipeline.ir import Variable
from aicd.pipeline.schema import JOB_KEYWORDS, TOP_LEVEL_KEYWORDS

CTX = PipelineContext(
    predefined=(
        Variable("CI_COMMIT_BRANCH", "main"),
        Variable("CI_COMMIT_REF_NAME", "main"),
        Variable("CI_PIPELINE_SOURCE", "push"),
    )
)


def _bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    lines.append("job: {script: *a8}")
    return "\n".join(lines) + "\n"


def _many_jobs_needing_each_other() -> str:
    return "".join(f"j{i}:\n  script: echo\n  needs: [j{(i + 1) % 30}]\n" for i in range(30))


JOB = "job:\n  script: echo\n"

# (id, file content as text or bytes, fragment the messages must contain (case-insensitive))
CASES: list[tuple[str, str | bytes, str]] = [
    # -- not YAML, or not a pipeline --------------------------------------------------
    ("empty-file", "", "empty"),
    ("only-comments", "# just a comment\n# another\n", "empty"),
    ("only-whitespace", "   \n\n  \n", "empty"),
    ("unclosed-flow", "job: {script: [echo\n", "yaml syntax error"),
    ("bad-indent", "job:\n  script: echo\n stage: test\n", "yaml syntax error"),
    ("tab-indent", "job:\n\tscript: echo\n", "tab"),
    ("top-level-list", "- job\n- other\n", "must be a mapping"),
    ("top-level-scalar", "just some text\n", "must be a mapping"),
    ("binary-garbage", bytes(range(128, 256)) * 40, "utf-8"),
    ("nul-byte", "job:\n  script: echo \x00\n", "nul"),
    ("three-documents", "a: 1\n---\nb: 2\n---\nc: 3\n", "documents"),
    ("yaml-bomb", _bomb(), "alias"),
    ("deep-nesting", "job: " + "[" * 10_000 + "]" * 10_000 + "\n", "nested too deeply"),
    ("deep-mappings", "job:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 150)), "nested"),
    ("unknown-anchor", "job:\n  script: *nope\n", "nope"),
    ("hidden-jobs-only", ".hidden:\n  script: echo\n", "defines no job"),
    ("variables-only", "variables:\n  A: 1\n", "defines no job"),
    # -- jobs ----------------------------------------------------------------------------
    ("job-is-a-list", "job: [echo]\n", "jobs must be mappings"),
    ("job-is-a-string", "job: echo hi\n", "jobs must be mappings"),
    ("misspelt-top-level", "stage: [a]\n" + JOB, 'did you mean "stages"'),
    ("no-script", "job:\n  stage: test\n", "has no script"),
    ("empty-script", "job:\n  script: []\n", "script is empty"),
    ("script-mapping-line", "job:\n  script:\n    - echo: hi\n", "quote the line"),
    ("script-number", "job:\n  script: 42\n", "script must be a string"),
    ("script-too-deep", "job:\n  script: " + "[" * 12 + "echo" + "]" * 12 + "\n", "10 levels"),
    ("unknown-keyword", "job:\n  script: echo\n  artefacts: {paths: [a]}\n", 'did you mean "artifacts"'),
    ("name-too-long", "j" * 300 + ":\n  script: echo\n", "255"),
    # -- stages ----------------------------------------------------------------------------
    ("stages-string", "stages: build\n" + JOB, "stages must be a list"),
    ("stages-with-mapping", "stages: [{a: 1}]\n" + JOB, "must be a string"),
    ("unknown-stage", "job:\n  stage: biuld\n  script: echo\n", 'did you mean "build"'),
    # -- when, rules, only ------------------------------------------------------------------
    ("bad-when", "job:\n  script: echo\n  when: sometimes\n", "when must be one of"),
    ("never-outside-rules", "job:\n  script: echo\n  when: never\n", "only be used in rules"),
    ("delayed-no-start", "job:\n  script: echo\n  when: delayed\n", "start_in"),
    ("bad-start-in", "job:\n  script: echo\n  when: delayed\n  start_in: tomorrow\n", "not a duration"),
    ("rules-not-list", "job:\n  script: echo\n  rules: {if: $A}\n", "rules must be a list"),
    ("rule-unknown-key", "job:\n  script: echo\n  rules:\n    - iff: $A\n", "iff"),
    ("bad-rule-regex", "job:\n  script: echo\n  rules:\n    - if: $A =~ /(unclosed/\n", "regex"),
    ("bad-rule-expression", "job:\n  script: echo\n  rules:\n    - if: $A == \n", "expression"),
    (
        "rules-and-only",
        "job:\n  script: echo\n  only: [main]\n  rules: [{when: always}]\n",
        "cannot be used with rules",
    ),
    ("bad-only-regex", "job:\n  script: echo\n  only: ['/(x/']\n", "regular expression"),
    ("workflow-not-mapping", "workflow: [a]\n" + JOB, "workflow must be a mapping"),
    ("workflow-manual", "workflow:\n  rules: [{when: manual}]\n" + JOB, "always or never"),
    # -- typed keywords ---------------------------------------------------------------------------
    ("allow-failure-string", "job:\n  script: echo\n  allow_failure: sometimes\n", "allow_failure must be"),
    ("retry-too-many", "job:\n  script: echo\n  retry: 5\n", "from 0 to 2"),
    ("retry-bad-when", "job:\n  script: echo\n  retry: {max: 1, when: [flaky]}\n", "retry:when"),
    ("timeout-bad", "job:\n  script: echo\n  timeout: a while\n", "timeout is not a duration"),
    ("bad-coverage-regex", "job:\n  script: echo\n  coverage: '/(\\d+/'\n", "not a valid regular expression"),
    ("coverage-no-slashes", "job:\n  script: echo\n  coverage: 'Total (\\d+)'\n", "between slashes"),
    ("variables-list", "variables: [A, B]\n" + JOB, "variables must be a mapping"),
    ("variable-value-list", "variables:\n  A: [1, 2]\n" + JOB, "variables:A must be"),
    ("job-variables-bool", "job:\n  script: echo\n  variables: true\n", "variables must be a mapping"),
    ("artifacts-paths-string", "job:\n  script: echo\n  artifacts: {paths: dist}\n", "artifacts:paths"),
    ("junit-number", "job:\n  script: echo\n  artifacts: {reports: {junit: 3}}\n", "junit"),
    ("cache-paths-string", "job:\n  script: echo\n  cache: {key: k, paths: folder}\n", "cache:paths"),
    ("cache-policy", "job:\n  script: echo\n  cache: {policy: sometimes}\n", "cache:policy"),
    ("environment-no-name", "job:\n  script: echo\n  environment: {url: http://x}\n", "needs a name"),
    ("parallel-zero", "job:\n  script: echo\n  parallel: 0\n", "from 1 to 200"),
    (
        "parallel-huge-matrix",
        "job:\n  script: echo\n  parallel:\n    matrix:\n      - A: ["
        + ", ".join(map(str, range(30)))
        + "]\n        B: ["
        + ", ".join(map(str, range(30)))
        + "]\n",
        "at most 200",
    ),
    ("image-list", "job:\n  script: echo\n  image: [a, b]\n", "image must be"),
    # -- needs / dependencies ---------------------------------------------------------------------
    (
        "needs-string",
        "build: {stage: build, script: echo}\njob:\n  script: echo\n  needs: build\n",
        "needs must be a list",
    ),
    ("needs-null-entry", "job:\n  script: echo\n  needs: [~]\n", "needs[0]"),
    (
        "needs-unknown",
        "build: {stage: build, script: echo}\njob:\n  script: echo\n  needs: [biuld]\n",
        'did you mean "build"',
    ),
    (
        "needs-later-stage",
        "a: {stage: deploy, script: echo}\njob:\n  stage: build\n  script: echo\n  needs: [a]\n",
        "later stage",
    ),
    ("needs-self", "job:\n  script: echo\n  needs: [job]\n", "needs itself"),
    ("needs-cycle", "a: {script: echo, needs: [b]}\nb: {script: echo, needs: [a]}\n", "cycle"),
    ("needs-long-cycle", _many_jobs_needing_each_other(), "cycle"),
    (
        "needs-excluded",
        "a: {script: echo, rules: [{when: never}]}\njob: {script: echo, needs: [a]}\n",
        "optional: true",
    ),
    ("dependencies-unknown", "job:\n  script: echo\n  dependencies: [invalid]\n", "is not a job"),
    (
        "dependencies-later-stage",
        "a: {stage: deploy, script: echo}\njob: {script: echo, dependencies: [a]}\n",
        "a later stage",
    ),
    (
        "dependencies-not-in-needs",
        "a: {stage: build, script: echo}\nb: {stage: build, script: echo}\n"
        "job: {script: echo, needs: [a], dependencies: [b]}\n",
        "must also be in needs",
    ),
    # -- extends, !reference, include (the loader) ----------------------------------------------------
    ("extends-unknown", "job:\n  extends: .nope\n  script: echo\n", "nope"),
    (
        "extends-loop",
        ".a:\n  extends: .b\n.b:\n  extends: .a\njob:\n  extends: .a\n  script: echo\n",
        "extends",
    ),
    ("reference-missing", "job:\n  script: !reference [.nope, script]\n", "nope"),
    ("reference-not-list", "job:\n  script: !reference .nope\n", "reference"),
    ("include-missing-file", "include: {local: missing.yml}\n" + JOB, "missing.yml"),
    # -- strings that would fail the job at run time (a NUL, a name too long for a folder) ---------
    ("nul-escape-in-job-name", '"bad\\0name":\n  script: echo\n', "nul character"),
    ("nul-escape-in-variable", 'job:\n  script: echo\n  variables:\n    A: "x\\0y"\n', "nul character"),
    ("nul-escape-in-stage", 'stages: ["a\\0"]\njob:\n  script: echo\n', "nul character"),
    ("lone-surrogate", 'job:\n  script: ["echo \\ud800"]\n', "invalid unicode"),
    ("cache-key-too-long", "job:\n  script: echo\n  cache:\n    key: " + "k" * 400 + "\n", "at most 255"),
    ("environment-too-long", "job:\n  script: echo\n  environment: " + "e" * 300 + "\n", "allows 255"),
    (
        "environment-name-too-long",
        "job:\n  script: echo\n  environment: {name: " + "e" * 300 + "}\n",
        "allows 255",
    ),
]


def _write(root: Path, content: str | bytes) -> None:
    path = root / ".gitlab-ci.yml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


def _assert_located(diagnostics: Any) -> None:
    for d in diagnostics:
        assert d.file == ".gitlab-ci.yml" or d.file.endswith(".yml"), str(d)
        assert d.line >= 1 and d.column >= 1, f"not located: {d}"
        assert str(d).startswith(f"{d.file}:{d.line}:{d.column}: ")


def test_there_are_at_least_fifty_cases() -> None:
    assert len(CASES) >= 50


@pytest.mark.parametrize(("content", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_pipeline(tmp_path: Path, content: str | bytes, fragment: str) -> None:
    _write(tmp_path, content)
    report = lint_pipeline(tmp_path, ".gitlab-ci.yml", CTX)
    assert report.pipeline is None
    assert report.errors, "lint found no error"
    _assert_located(report.errors)
    assert any(fragment.lower() in d.message.lower() for d in report.errors), [str(d) for d in report.errors]
    assert not any("internal error" in d.message for d in report.diagnostics)
    with pytest.raises(PipelineError) as info:
        load_pipeline(tmp_path, ".gitlab-ci.yml", CTX)
    assert [str(d) for d in info.value.diagnostics] == [str(d) for d in report.errors]


def test_twenty_megabyte_file(tmp_path: Path) -> None:
    line = "# " + "x" * 98 + "\n"
    (tmp_path / ".gitlab-ci.yml").write_text(JOB + line * (20 * 1024 * 1024 // len(line)))
    report = lint_pipeline(tmp_path, ".gitlab-ci.yml", CTX)
    assert report.pipeline is None and report.errors
    _assert_located(report.errors)
    assert any("MiB" in d.message or "large" in d.message or "big" in d.message for d in report.errors)
    with pytest.raises(PipelineError):
        load_pipeline(tmp_path, ".gitlab-ci.yml", CTX)


def test_many_problems_in_one_file_are_all_reported(tmp_path: Path) -> None:
    text = "".join(f"job{i}:\n  script: echo\n  when: bad{i}\n" for i in range(40))
    _write(tmp_path, text)
    with pytest.raises(PipelineError) as info:
        load_pipeline(tmp_path, ".gitlab-ci.yml", CTX)
    assert len(info.value.diagnostics) == 40
    assert [d.line for d in info.value.diagnostics] == [3 + 3 * i for i in range(40)]


# -- generated input ---------------------------------------------------------------------------------

_WORDS = [
    *sorted(JOB_KEYWORDS | TOP_LEVEL_KEYWORDS),
    "job",
    "build",
    ".hidden",
    "matrix",
    "if",
    "exit_codes",
    "paths",
    "key",
    "name",
    "value",
    "job: [a]",
    "files",
    "reports",
    "junit",
    "max",
    "refs",
]
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=300),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=12),
    st.sampled_from(
        [
            "echo hi",
            "build",
            "test",
            "job",
            "manual",
            "delayed",
            "never",
            "always",
            "pull",
            "1 hour",
            "$CI_COMMIT_BRANCH",
            '$A == "x"',
            "/re(/",
            "/ok/",
            "$[[ matrix.X ]]",
            ".pre",
            "*",
        ]
    ),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(_WORDS), inner, max_size=5)
    ),
    max_leaves=30,
)
_DOCS = st.dictionaries(st.sampled_from(_WORDS), _VALUES, max_size=6)
_JOB_BODIES = st.dictionaries(st.sampled_from(sorted(JOB_KEYWORDS)), _VALUES, max_size=5).map(
    lambda body: {"script": "echo", **body}
)
_JOB_DOCS = st.dictionaries(
    st.sampled_from(["build", "test", "job", "deploy"]), _JOB_BODIES, min_size=1, max_size=4
)


def _check(content: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / ".gitlab-ci.yml").write_text(content)
        with contextlib.suppress(AicdError):  # any other exception fails the test
            load_pipeline(root, ".gitlab-ci.yml", CTX)
        report = lint_pipeline(root, ".gitlab-ci.yml", CTX)
        assert not any("internal error" in d.message for d in report.diagnostics), report.diagnostics
        for d in report.errors:
            assert d.line >= 1, str(d)


_SETTINGS = settings(
    max_examples=int(os.environ.get("AICD_FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


@_SETTINGS
@given(_DOCS)
def test_generated_documents_only_raise_aicd_errors(doc: dict[str, Any]) -> None:
    _check(yaml.safe_dump(doc, allow_unicode=True))


@_SETTINGS
@given(_JOB_DOCS)
def test_generated_jobs_only_raise_aicd_errors(doc: dict[str, Any]) -> None:
    _check(yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=60, deadline=None, database=None)
@given(st.text(max_size=300))
def test_random_text_only_raises_aicd_errors(text: str) -> None:
    _check(text)


def test_nul_and_long_cache_key_are_located_lint_errors(tmp_path: Path) -> None:
    """Both failed the job at run time with a raw ValueError / OSError before."""
    _write(tmp_path, 'ok:\n  script: echo\n"bad\\0name":\n  script: echo\n')
    (nul,) = lint_pipeline(tmp_path, ".gitlab-ci.yml", CTX).errors
    assert (nul.line, nul.column) == (3, 1) and "NUL character" in nul.message
    _write(tmp_path, f"job:\n  script: echo\n  cache:\n    key: {'k' * 400}\n    paths: [x]\n")
    (long,) = lint_pipeline(tmp_path, ".gitlab-ci.yml", CTX).errors
    assert (long.line, long.column) == (4, 5) and "cache:key is 400 characters long" in long.message
