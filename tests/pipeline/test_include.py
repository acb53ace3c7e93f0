"""include: local files, wildcards, nesting, limits, rules, inputs and merging, on real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from aicd.errors import PipelineError
from aicd.pipeline.include import Document, assemble, deep_merge
from aicd.pipeline.nodes import LocMap, Mark
from aicd.pipeline.rules import RuleContext


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def run(
    tmp_path: Path, files: dict[str, str], variables: dict[str, str] | None = None, **kw: object
) -> Document:
    write(tmp_path, files)
    ctx = RuleContext(variables=variables or {}, project_dir=tmp_path)
    return assemble(tmp_path, ".gitlab-ci.yml", ctx, **kw)  # type: ignore[arg-type]


def error(
    tmp_path: Path, files: dict[str, str], variables: dict[str, str] | None = None, **kw: object
) -> str:
    with pytest.raises(PipelineError) as info:
        run(tmp_path, files, variables, **kw)
    return str(info.value)


# --- local includes and merging ------------------------------------------------------------


def test_string_include_and_merge_order(tmp_path: Path) -> None:
    doc = run(
        tmp_path,
        {
            ".gitlab-ci.yml": "include: ci/build.yml\nbuild:\n  stage: build\ntest:\n  script: [pytest]\n",
            "ci/build.yml": "build:\n  stage: test\n  script: [make]\n  variables: {A: '1', B: '1'}\n",
        },
    )
    root = doc.root
    assert "include" not in root
    assert list(root) == ["build", "test"]  # included jobs first, then the including file's
    assert root["build"] == {"stage": "build", "script": ["make"], "variables": {"A": "1", "B": "1"}}
    # Every value keeps the mark of the file it came from.
    assert root["build"].key_marks["stage"] == Mark(".gitlab-ci.yml", 3, 3)
    assert root["build"].key_marks["script"] == Mark("ci/build.yml", 3, 3)
    assert root["build"]["script"].item_marks == [Mark("ci/build.yml", 3, 12)]
    assert doc.files == (".gitlab-ci.yml", "ci/build.yml")


def test_deep_merge_merges_mappings_and_replaces_lists(tmp_path: Path) -> None:
    doc = run(
        tmp_path,
        {
            ".gitlab-ci.yml": (
                "include:\n  - local: /a.yml\n"
                "job:\n  variables: {B: two, C: three}\n  script: [own]\n  cache: {paths: [x]}\n"
            ),
            "a.yml": (
                "job:\n  variables: {A: one, B: one}\n  script: [a1, a2]\n  cache: {key: k, paths: [y, z]}\n"
            ),
        },
    )
    job = doc.root["job"]
    assert job["variables"] == {"A": "one", "B": "two", "C": "three"}
    assert job["script"] == ["own"]
    assert job["cache"] == {"key": "k", "paths": ["x"]}
    assert job["variables"].key_marks["A"].file == "a.yml"
    assert job["variables"].key_marks["B"].file == ".gitlab-ci.yml"


def test_later_includes_override_earlier_ones(tmp_path: Path) -> None:
    doc = run(
        tmp_path,
        {
            ".gitlab-ci.yml": "include: [a.yml, {local: b.yml}]\n",
            "a.yml": "job: {script: [a], stage: a}\n",
            "b.yml": "job: {script: [b]}\n",
        },
    )
    assert doc.root["job"] == {"script": ["b"], "stage": "a"}


def test_nested_includes_are_relative_to_the_project_root(tmp_path: Path) -> None:
    doc = run(
        tmp_path,
        {
            ".gitlab-ci.yml": "include: ci/one.yml\n",
            "ci/one.yml": "include: ci/two.yml\none: {script: [1]}\n",
            "ci/two.yml": "two: {script: [2]}\n",
        },
    )
    assert list(doc.root) == ["two", "one"]
    assert doc.files == (".gitlab-ci.yml", "ci/one.yml", "ci/two.yml")


def test_the_same_file_may_be_included_twice(tmp_path: Path) -> None:
    doc = run(
        tmp_path,
        {
            ".gitlab-ci.yml": "include: [a.yml, b.yml]\n",
            "a.yml": "include: c.yml\n",
            "b.yml": "include: c.yml\n",
            "c.yml": "c: {script: [c]}\n",
        },
    )
    assert list(doc.root) == ["c"]


def test_variables_are_expanded_in_include_paths(tmp_path: Path) -> None:
    doc = run(
        tmp_path,
        {".gitlab-ci.yml": "include:\n  local: ${CI_INCLUDE_LOCAL}\n", "base.yml": "b: {script: [x]}\n"},
        {"CI_INCLUDE_LOCAL": "/base.yml"},
    )
    assert list(doc.root) == ["b"]


def test_dot_slash_paths_are_normalised(tmp_path: Path) -> None:
    doc = run(
        tmp_path, {".gitlab-ci.yml": "include: ./ci/../a.yml\n", "a.yml": "a: {script: [x]}\n", "ci/.k": ""}
    )
    assert doc.files == (".gitlab-ci.yml", "a.yml")


def test_empty_include_is_fine(tmp_path: Path) -> None:
    assert run(tmp_path, {".gitlab-ci.yml": "include:\njob: {script: [x]}\n"}).root == {
        "job": {"script": ["x"]}
    }


def test_deep_merge_does_not_change_its_arguments() -> None:
    base = LocMap({"a": LocMap({"x": 1})})
    over = LocMap({"a": LocMap({"y": 2}), "b": 3})
    out = deep_merge(base, over)
    assert out == {"a": {"x": 1, "y": 2}, "b": 3}
    assert base == {"a": {"x": 1}} and over == {"a": {"y": 2}, "b": 3}


# --- wildcards (the conformance case include-local-wildcard) -----------------------------------

WILDCARD_FILES = {
    ".gitlab/docs.gitlab-ci.yml": "docs: {script: [d]}\n",
    ".gitlab/build-images.gitlab-ci.yml": "build-images: {script: [b]}\n",
    ".gitlab/cache-repo.gitlab-ci.yml": "cache-repo: {script: [c]}\n",
    "configs/.gitlab-ci.yml": "configs/.gitlab-ci.yml: {script: [x]}\n",
    "configs/subfolder/.gitlab-ci.yml": "configs/subfolder/.gitlab-ci.yml: {script: [x]}\n",
    "configs/subfolder/subfolder/.gitlab-ci.yml": (
        "configs/subfolder/subfolder/.gitlab-ci.yml: {script: [x]}\n"
    ),
}


@pytest.mark.parametrize(
    "pattern, jobs",
    [
        ("/.gitlab/*.gitlab-ci.yml", ["build-images", "cache-repo", "docs"]),
        ("configs/*.yml", ["configs/.gitlab-ci.yml"]),
        (
            "configs/**.yml",
            [
                "configs/.gitlab-ci.yml",
                "configs/subfolder/.gitlab-ci.yml",
                "configs/subfolder/subfolder/.gitlab-ci.yml",
            ],
        ),
        (
            "configs/**/*.yml",
            ["configs/subfolder/.gitlab-ci.yml", "configs/subfolder/subfolder/.gitlab-ci.yml"],
        ),
    ],
)
def test_wildcards(tmp_path: Path, pattern: str, jobs: list[str]) -> None:
    doc = run(tmp_path, {**WILDCARD_FILES, ".gitlab-ci.yml": f"include: '{pattern}'\n"})
    assert list(doc.root) == jobs


def test_wildcard_without_match(tmp_path: Path) -> None:
    message = error(tmp_path, {".gitlab-ci.yml": "include:\n  - local: 'ci/*.yml'\n"})
    assert message.startswith(".gitlab-ci.yml:2:5:")
    assert "`ci/*.yml` does not match any files" in message


# --- errors ---------------------------------------------------------------------------------------------


def test_missing_main_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineError) as info:
        assemble(tmp_path, ".gitlab-ci.yml", RuleContext(variables={}))
    message = str(info.value)
    assert message.startswith(".gitlab-ci.yml: pipeline file not found")
    assert str(tmp_path / ".gitlab-ci.yml") in message


def test_missing_included_file_says_where_it_looked(tmp_path: Path) -> None:
    message = error(tmp_path, {".gitlab-ci.yml": "---\ninclude:\n  - { local: .gitlab-ci-invalid.yml }\n"})
    assert message.startswith(
        ".gitlab-ci.yml:3:5: include:local file `.gitlab-ci-invalid.yml` does not exist"
    )
    assert str(tmp_path / ".gitlab-ci-invalid.yml") in message


def test_include_loop(tmp_path: Path) -> None:
    message = error(
        tmp_path,
        {".gitlab-ci.yml": "include: a.yml\n", "a.yml": "include: b.yml\n", "b.yml": "include: a.yml\n"},
    )
    assert message == "b.yml:1:1: include loop: a.yml -> b.yml -> a.yml; remove one of these includes"


def test_self_include_of_the_main_file(tmp_path: Path) -> None:
    assert "include loop: .gitlab-ci.yml -> .gitlab-ci.yml" in error(
        tmp_path, {".gitlab-ci.yml": "include: /.gitlab-ci.yml\n"}
    )


def test_limit_of_150_included_files(tmp_path: Path) -> None:
    files = {f"ci/f{i}.yml": f"j{i}: {{script: [x]}}\n" for i in range(151)}
    listed = "".join(f"  - ci/f{i}.yml\n" for i in range(150))
    doc = run(tmp_path, {**files, ".gitlab-ci.yml": "include:\n" + listed})
    assert len(doc.root) == 150
    message = error(tmp_path, {".gitlab-ci.yml": "include:\n" + listed + "  - ci/f150.yml\n"})
    assert message.startswith(".gitlab-ci.yml:152:5: too many includes: more than 150")


def test_repeats_count_toward_the_limit(tmp_path: Path) -> None:
    files = {"a.yml": "a: {script: [x]}\n", "b.yml": "include:\n" + "  - a.yml\n" * 100 + "\n"}
    message = error(tmp_path, {**files, ".gitlab-ci.yml": "include: [b.yml, b.yml]\n"})
    assert "too many includes" in message


@pytest.mark.parametrize(
    "entry, kind",
    [
        ("'https://example.com/ci.yml'", "remote"),
        ("{remote: 'https://example.com/ci.yml'}", "remote"),
        ("{project: group/p, file: ci.yml}", "project"),
        ("{template: Auto-DevOps.gitlab-ci.yml}", "template"),
        ("{component: gitlab.com/g/c@1.0}", "component"),
    ],
)
def test_network_includes_are_refused(tmp_path: Path, entry: str, kind: str) -> None:
    message = error(tmp_path, {".gitlab-ci.yml": f"include:\n  - {entry}\n"})
    assert message.startswith(".gitlab-ci.yml:2:")
    assert (
        f"include:{kind} is not supported: aicd runs without network access to other projects; "
        "copy the file into the repository and use include:local"
    ) in message


def test_path_outside_the_project(tmp_path: Path) -> None:
    project = tmp_path / "p"
    write(tmp_path, {"outside.yml": "x: {script: [x]}\n"})
    message = error(project, {".gitlab-ci.yml": "include:\n  local: '../outside.yml'\n"})
    assert message.startswith(".gitlab-ci.yml:2:3:")
    assert "outside the project directory" in message


def test_include_must_be_yaml(tmp_path: Path) -> None:
    message = error(tmp_path, {".gitlab-ci.yml": "include: ci/run.sh\n", "ci/run.sh": "echo\n"})
    assert "must end in .yml or .yaml" in message


@pytest.mark.parametrize(
    "entry, text",
    [
        ("{local: a.yml, remote: 'https://x/y.yml'}", "only one of local, remote"),
        ("{locl: a.yml}", 'unknown key `locl` (did you mean "local"?)'),
        ("{rules: []}", "does not say what to include"),
        ("42", "an include must be a file path or a mapping"),
        ("{local: 42}", "include:local must be a file path"),
    ],
)
def test_malformed_include_entries(tmp_path: Path, entry: str, text: str) -> None:
    assert text in error(
        tmp_path, {".gitlab-ci.yml": f"include:\n  - {entry}\n", "a.yml": "a: {script: [x]}\n"}
    )


def test_errors_of_several_includes_are_reported_together(tmp_path: Path) -> None:
    with pytest.raises(PipelineError) as info:
        run(tmp_path, {".gitlab-ci.yml": "include:\n  - missing1.yml\n  - missing2.yml\n"})
    assert [d.line for d in info.value.diagnostics] == [2, 3]


def test_syntax_error_in_an_included_file_is_located_there(tmp_path: Path) -> None:
    message = error(tmp_path, {".gitlab-ci.yml": "include: ci/a.yml\n", "ci/a.yml": "job:\n\tscript: x\n"})
    assert message.startswith("ci/a.yml:2:1: YAML syntax error")


def test_empty_included_file(tmp_path: Path) -> None:
    message = error(tmp_path, {".gitlab-ci.yml": "include: a.yml\n", "a.yml": "# nothing\n"})
    assert message.startswith("a.yml:1:1: the file is empty")


def test_warnings_of_included_files_are_kept(tmp_path: Path) -> None:
    doc = run(
        tmp_path, {".gitlab-ci.yml": "include: a.yml\n", "a.yml": "a: {script: [x]}\na: {script: [y]}\n"}
    )
    assert [(w.file, w.line, w.severity) for w in doc.warnings] == [("a.yml", 2, "warning")]
    assert doc.root["a"] == {"script": ["y"]}


# --- include rules (conformance case include-rules) ----------------------------------------------


INCLUDE_RULES = {
    ".gitlab-ci.yml": (
        "include:\n"
        "  - local: .gitlab-ci-to-be-added.yml\n    rules:\n      - if: '$GITLAB_CI == \"false\"'\n"
        "  - local: .gitlab-ci-issue685.yml\n    rules:\n      - if: $CI_COMMIT_TAG\n"
        "  - local: .gitlab-ci-not-to-be-added.yml\n    rules:\n      - if: '$GITLAB_CI == \"true\"'\n"
    ),
    ".gitlab-ci-to-be-added.yml": 'build-job:\n  script: [echo "This should appear"]\n',
    ".gitlab-ci-issue685.yml": "test-job:\n  script: [echo tag]\n",
    ".gitlab-ci-not-to-be-added.yml": 'build-job:\n  script: [echo "This should not appear"]\n',
}


def test_include_rules_if(tmp_path: Path) -> None:
    doc = run(tmp_path, INCLUDE_RULES, {"GITLAB_CI": "false"})
    assert doc.root == {"build-job": {"script": ['echo "This should appear"']}}
    assert ".gitlab-ci-not-to-be-added.yml" not in doc.files


def test_include_rules_with_a_tag(tmp_path: Path) -> None:
    doc = run(tmp_path, INCLUDE_RULES, {"GITLAB_CI": "false", "CI_COMMIT_TAG": "v1"})
    assert list(doc.root) == ["build-job", "test-job"]


def test_include_rules_exists_and_when(tmp_path: Path) -> None:
    files = {
        ".gitlab-ci.yml": (
            "include:\n"
            "  - local: a.yml\n    rules:\n      - exists: [Dockerfile]\n"
            "  - local: b.yml\n    rules:\n      - exists: [missing.txt]\n"
            "  - local: c.yml\n    rules:\n      - when: never\n"
            "  - local: d.yml\n    rules:\n      - if: $NOPE\n      - when: always\n"
        ),
        "Dockerfile": "FROM x\n",
        "a.yml": "a: {script: [x]}\n",
        "b.yml": "b: {script: [x]}\n",
        "c.yml": "c: {script: [x]}\n",
        "d.yml": "d: {script: [x]}\n",
    }
    assert list(run(tmp_path, files).root) == ["a", "d"]


def test_rules_skip_an_include_before_its_kind_is_checked(tmp_path: Path) -> None:
    files = {".gitlab-ci.yml": "include:\n  - remote: 'https://x/y.yml'\n    rules:\n      - if: $NOPE\n"}
    assert run(tmp_path, files).root == {}


@pytest.mark.parametrize(
    "rule, text",
    [
        ("- when: manual", "when must be never or always"),
        ("- allow_failure: true", "`allow_failure` cannot be used in include rules"),
    ],
)
def test_invalid_include_rules(tmp_path: Path, rule: str, text: str) -> None:
    files = {
        ".gitlab-ci.yml": f"include:\n  - local: a.yml\n    rules:\n      {rule}\n",
        "a.yml": "a: {script: [x]}\n",
    }
    message = error(tmp_path, files)
    assert message.startswith(".gitlab-ci.yml:4:9:")
    assert text in message


def test_include_rules_must_be_a_list(tmp_path: Path) -> None:
    files = {".gitlab-ci.yml": "include:\n  - local: a.yml\n    rules: yes\n", "a.yml": "a: {script: [x]}\n"}
    assert "include:rules must be a list" in error(tmp_path, files)


# --- inputs ------------------------------------------------------------------------------------------------

TEMPLATE_DEFAULTS = """spec:
  inputs:
    default_input_string:
      default: string
    default_input_number:
      default: 1
      type: number
    default_input_boolean:
      default: true
      type: boolean
    default_can_be_overwritten:
      default: default
    default_input_array:
      type: array
      default:
        - alice
        - bob
---
scan-website:
  interruptible: $[[ inputs.default_input_boolean ]]
  parallel: $[[ inputs.default_input_number ]]
  script:
    - echo $[[ inputs.default_input_string ]]
    - echo $[[ inputs.default_input_number ]]
    - echo $[[ inputs.default_input_boolean ]]
    - echo $[[ inputs.default_can_be_overwritten ]]
    - $[[ inputs.default_input_array ]]
"""


def test_inputs_defaults_types_and_overrides(tmp_path: Path) -> None:
    doc = run(
        tmp_path,
        {
            ".gitlab-ci.yml": (
                "include:\n  - local: '/t.yml'\n    inputs:\n"
                "      default_can_be_overwritten: 'overwrite default value'\n"
            ),
            "t.yml": TEMPLATE_DEFAULTS,
        },
    )
    job = doc.root["scan-website"]
    assert job["interruptible"] is True  # a whole-value block keeps the input's type
    assert job["parallel"] == 1
    assert job["script"] == [
        "echo string",
        "echo 1",
        "echo true",
        "echo overwrite default value",
        ["alice", "bob"],
    ]
    assert job["script"].item_marks[0] == Mark("t.yml", 23, 7)


def test_inputs_in_keys_and_repeated_blocks(tmp_path: Path) -> None:
    template = (
        "spec:\n  inputs:\n    name:\n---\n"
        "job $[[ inputs.name ]] $[[inputs.name]]:\n"
        "  script:\n    - echo $[[ inputs.name ]]$[[ inputs.name ]]\n"
    )
    doc = run(
        tmp_path,
        {
            ".gitlab-ci.yml": (
                "include:\n  - local: t.yml\n    inputs: {name: foo}\n"
                "  - local: t.yml\n    inputs: {name: bar}\n"
            ),
            "t.yml": template,
        },
    )
    assert doc.root == {
        "job foo foo": {"script": ["echo foofoo"]},
        "job bar bar": {"script": ["echo barbar"]},
    }


def test_array_input_in_a_string_and_hyphenated_names(tmp_path: Path) -> None:
    template = (
        "spec:\n  inputs:\n    the-list:\n      type: array\n---\n"
        "job:\n  script:\n    - echo $[[ inputs.the-list ]]\n"
    )
    doc = run(
        tmp_path,
        {".gitlab-ci.yml": "include:\n  local: t.yml\n  inputs:\n    the-list: [a, b]\n", "t.yml": template},
    )
    assert doc.root["job"]["script"] == ['echo ["a", "b"]']


def test_array_input_as_rules(tmp_path: Path) -> None:
    template = (
        "spec:\n  inputs:\n    rules-config:\n      type: array\n      default:\n"
        '        - if: $CI_PIPELINE_SOURCE == "schedule"\n---\n'
        "test_job:\n  rules: $[[ inputs.rules-config ]]\n"
    )
    doc = run(tmp_path, {".gitlab-ci.yml": "include: t.yml\n", "t.yml": template})
    assert doc.root["test_job"]["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "schedule"'}]


def test_inputs_are_interpolated_before_nested_includes(tmp_path: Path) -> None:
    template = "spec:\n  inputs:\n    file:\n---\ninclude: $[[ inputs.file ]]\n"
    doc = run(
        tmp_path,
        {
            ".gitlab-ci.yml": "include:\n  local: t.yml\n  inputs: {file: ci/real.yml}\n",
            "t.yml": template,
            "ci/real.yml": "real: {script: [x]}\n",
        },
    )
    assert list(doc.root) == ["real"]


def test_no_header_means_no_interpolation(tmp_path: Path) -> None:
    doc = run(tmp_path, {".gitlab-ci.yml": "job:\n  script:\n    - echo $[[ inputs.x ]]\n"})
    assert doc.root["job"]["script"] == ["echo $[[ inputs.x ]]"]


def test_matrix_blocks_are_left_alone(tmp_path: Path) -> None:
    template = "spec:\n  inputs: {}\n---\njob:\n  needs: [{job: 'b: [$[[ matrix.X ]]]'}]\n"
    doc = run(tmp_path, {".gitlab-ci.yml": "include: t.yml\n", "t.yml": template})
    assert doc.root["job"]["needs"] == [{"job": "b: [$[[ matrix.X ]]]"}]


def test_main_file_inputs(tmp_path: Path) -> None:
    text = (
        "spec:\n  inputs:\n    stage:\n      default: test\n    env:\n---\n"
        "job:\n  stage: $[[ inputs.stage ]]\n  script:\n    - deploy $[[ inputs.env ]]\n"
    )
    doc = run(tmp_path, {".gitlab-ci.yml": text}, inputs={"env": "prod"})
    assert doc.root["job"] == {"stage": "test", "script": ["deploy prod"]}
    message = error(tmp_path, {".gitlab-ci.yml": text})
    assert message == ".gitlab-ci.yml:5:5: `env` input: required value has not been provided"


def test_functions(tmp_path: Path) -> None:
    template = (
        "spec:\n  inputs:\n    v:\n      default: 'a b$X'\n---\njob:\n  script:\n"
        "    - $[[ inputs.v | truncate(1,3) ]]\n"
        "    - $[[ inputs.v | expand_vars ]]\n"
        "    - $[[ inputs.v | posix_escape ]]\n"
        "    - $[[ inputs.v | expand_vars | truncate(0,4) | posix_escape ]]\n"
    )
    doc = run(tmp_path, {".gitlab-ci.yml": "include: t.yml\n", "t.yml": template}, {"X": "yz"})
    assert doc.root["job"]["script"] == [" b$", "a byz", "a\\ b\\$X", "a\\ by"]


@pytest.mark.parametrize(
    "spec, given, text, where",
    [
        ("v:", "", "`t.yml`: `v` input: required value has not been provided", ".gitlab-ci.yml:3:5:"),
        (
            "v: {type: string}",
            "v: 1",
            "`t.yml`: `v` input: provided value is not a string",
            ".gitlab-ci.yml:4:7:",
        ),
        ("v: {type: number}", "v: '1'", "`v` input: provided value is not a number", ".gitlab-ci.yml:4:7:"),
        (
            "v: {type: boolean}",
            "v: 'true'",
            "`v` input: provided value is not a boolean",
            ".gitlab-ci.yml:4:7:",
        ),
        ("v: {type: array}", "v: 'true'", "`v` input: provided value is not an array", ".gitlab-ci.yml:4:7:"),
        ("v: {type: number, default: x}", "", "`v` input: default value is not a number", "t.yml:3:23:"),
        ("v: {type: foo}", "v: x", "header:spec:inputs:v input type unknown value: foo", "t.yml:3:9:"),
        (
            "v: {options: [foo, bar]}",
            "v: fizz",
            "`v` input: `fizz` cannot be used because it is not in the list of allowed options",
            ".gitlab-ci.yml:4:7:",
        ),
        (
            "v: {type: array, default: [], options: [foo, bar]}",
            "v: [bar, fizz]",
            "`v` input: fizz cannot be used because it is not in the list of allowed options",
            ".gitlab-ci.yml:4:7:",
        ),
        (
            "v: {regex: '^v\\d+$'}",
            "v: version",
            "`v` input: provided value does not match required RegEx pattern",
            ".gitlab-ci.yml:4:7:",
        ),
        ("v: {regex: '^[unclosed'}", "v: x", "`v` input: invalid regular expression", "t.yml:3:9:"),
        ("v: {default: x}", "w: 1", "unknown input arguments: w", ".gitlab-ci.yml:4:7:"),
        ("v: {default: x, kind: y}", "", "`v` input: unknown spec key `kind`", "t.yml:3:21:"),
    ],
)
def test_input_validation(tmp_path: Path, spec: str, given: str, text: str, where: str) -> None:
    files = {
        ".gitlab-ci.yml": "include:\n  - local: t.yml\n    inputs:\n"
        + (f"      {given}\n" if given else "      {}\n"),
        "t.yml": f"spec:\n  inputs:\n    {spec}\n---\njob:\n  script:\n    - echo $[[ inputs.v ]]\n",
    }
    message = error(tmp_path, files)
    assert text in message
    assert message.startswith(where)


@pytest.mark.parametrize(
    "block, text",
    [
        ("$[[ inputs.foo ]]", "unknown interpolation key: `foo`"),
        ("$[[ inputs.v | expand_vars | expand_vars | expand_vars | expand_vars ]]", "too many functions"),
        ("$[[ inputs.v | upcase ]]", "no function matching `upcase`"),
        ("$[[ nothing ]]", "invalid interpolation access pattern"),
    ],
)
def test_interpolation_errors_are_located(tmp_path: Path, block: str, text: str) -> None:
    template = f"spec:\n  inputs:\n    v: {{default: x}}\n---\njob:\n  script:\n    - echo {block}\n"
    message = error(tmp_path, {".gitlab-ci.yml": "include: t.yml\n", "t.yml": template})
    assert message.startswith("t.yml:7:7: ")
    assert text in message


def test_function_on_a_non_string(tmp_path: Path) -> None:
    template = (
        "spec:\n  inputs:\n    n: {default: 1, type: number}\n---\n"
        "job:\n  script:\n    - echo $[[ inputs.n | truncate(0,1) ]]\n"
    )
    assert "can only be used with string inputs" in error(
        tmp_path, {".gitlab-ci.yml": "include: t.yml\n", "t.yml": template}
    )


def test_inputs_to_a_file_without_header(tmp_path: Path) -> None:
    files = {".gitlab-ci.yml": "include:\n  local: a.yml\n  inputs: {x: 1}\n", "a.yml": "a: {script: [x]}\n"}
    message = error(tmp_path, files)
    assert message.startswith(".gitlab-ci.yml:3:3: inputs were given but `a.yml` has no `spec:inputs` header")


def test_inputs_in_reference_paths(tmp_path: Path) -> None:
    template = (
        "spec:\n  inputs:\n    base:\n---\n"
        "job:\n  script: !reference\n    - $[[ inputs.base ]]\n    - script\n"
    )
    doc = run(
        tmp_path, {".gitlab-ci.yml": "include:\n  local: t.yml\n  inputs: {base: .b}\n", "t.yml": template}
    )
    ref = doc.root["job"]["script"]
    assert ref.path == (".b", "script")


def test_a_symlinked_pipeline_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    """Issue 11: a `.gitlab-ci.yml` linking outside the repository showed the target's first
    characters in the error; linked inside, or through a linked folder, it is refused too."""
    outside = tmp_path / "passwd"
    outside.write_text("root:x:0:0:TOPSECRET\n")
    project = tmp_path / "project"
    (project / "real").mkdir(parents=True)
    (project / "real" / "ci.yml").write_text("job:\n  script: [echo]\n")
    (project / ".gitlab-ci.yml").symlink_to(outside)
    (project / "inside.yml").symlink_to(project / "real" / "ci.yml")
    (project / "linked").symlink_to(project / "real")
    for file in (".gitlab-ci.yml", "inside.yml", "linked/ci.yml"):
        with pytest.raises(PipelineError) as caught:
            assemble(project, file, RuleContext(variables={}))
        message = str(caught.value)
        assert "symbolic link" in message and "TOPSECRET" not in message and "passwd" not in message
    assert assemble(project, "real/ci.yml", RuleContext(variables={})).root["job"]
