"""extends, !reference and default: on real files, through include.assemble."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aicd.errors import PipelineError
from aicd.pipeline.extends import load_document, resolve
from aicd.pipeline.include import Document
from aicd.pipeline.loader import load_text
from aicd.pipeline.nodes import LocList, LocMap, Mark
from aicd.pipeline.rules import RuleContext


def resolved(tmp_path: Path, text: str, files: dict[str, str] | None = None) -> LocMap:
    for name, body in {".gitlab-ci.yml": text, **(files or {})}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    root, _doc = load_document(tmp_path, ".gitlab-ci.yml", RuleContext(variables={}, project_dir=tmp_path))
    return root


def problems(text: str) -> list[str]:
    doc = Document(root=load_text(text, ".gitlab-ci.yml"), files=(".gitlab-ci.yml",), warnings=[])
    with pytest.raises(PipelineError) as info:
        resolve(doc)
    return [str(d) for d in info.value.diagnostics]


def plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


# --- extends ------------------------------------------------------------------------------------


def test_extends_deep_merges_and_the_job_wins(tmp_path: Path) -> None:
    root = resolved(
        tmp_path,
        ".tests:\n  image: ruby\n  script: [rake test]\n  variables: {A: a, B: b}\n  only: [branches]\n"
        "rspec:\n  extends: .tests\n  script: [rake rspec]\n  variables: {B: own}\n",
    )
    job = root["rspec"]
    assert "extends" not in job
    assert plain(job) == {
        "image": "ruby",
        "script": ["rake rspec"],
        "variables": {"A": "a", "B": "own"},
        "only": ["branches"],
    }
    assert job.key_marks["image"] == Mark(".gitlab-ci.yml", 2, 3)  # from the parent
    assert job.key_marks["script"] == Mark(".gitlab-ci.yml", 8, 3)  # the job's own
    assert job.mark == root["rspec"].mark
    assert ".tests" in root  # hidden jobs stay


def test_later_parents_override_earlier_ones(tmp_path: Path) -> None:
    root = resolved(
        tmp_path,
        ".a:\n  stage: a\n  variables: {X: a, Y: a}\n"
        ".b:\n  stage: b\n  variables: {Y: b}\n"
        "job:\n  extends: [.a, .b]\n  script: [x]\n",
    )
    assert plain(root["job"]) == {"stage": "b", "variables": {"X": "a", "Y": "b"}, "script": ["x"]}


def test_multi_level_extends_from_included_files(tmp_path: Path) -> None:
    root = resolved(
        tmp_path,
        "include: ci/templates.yml\njob:\n  extends: .middle\n  script: [own]\n",
        {
            "ci/templates.yml": (
                ".base:\n  image: alpine\n  tags: [a]\n.middle:\n  extends: .base\n  tags: [b]\n"
            )
        },
    )
    assert plain(root["job"]) == {"image": "alpine", "tags": ["b"], "script": ["own"]}
    assert root["job"].key_marks["image"].file == "ci/templates.yml"
    assert "extends" not in root[".middle"]


def test_eleven_levels_of_extends_are_allowed(tmp_path: Path) -> None:
    chain = "".join(f".l{i}:\n  extends: .l{i + 1}\n" for i in range(11)) + ".l11:\n  image: deep\n"
    root = resolved(tmp_path, chain + "job:\n  extends: .l0\n  script: [x]\n")
    assert root["job"]["image"] == "deep"


def test_more_than_eleven_levels_is_an_error() -> None:
    chain = "".join(f".l{i}:\n  extends: .l{i + 1}\n" for i in range(12)) + ".l12:\n  image: deep\n"
    (message, *_rest) = problems(chain)
    assert "`extends` nested too deep" in message
    assert "GitLab allows 11 levels" in message


def test_unknown_parent_with_did_you_mean() -> None:
    messages = problems(".tests:\n  image: x\njob:\n  extends: .test\n  script: [x]\n")
    assert messages == [
        '.gitlab-ci.yml:4:3: job: extends `.test`, which is not defined (did you mean ".tests"?)'
    ]


def test_extends_loop_is_located_at_the_extends_key() -> None:
    messages = problems("a:\n  extends: b\n  script: [x]\nb:\n  extends: a\n")
    assert messages == [".gitlab-ci.yml:5:3: extends loop: a -> b -> a; remove one of these `extends`"]


def test_self_extension() -> None:
    assert problems("a:\n  extends: [a]\n") == [
        ".gitlab-ci.yml:2:13: extends loop: a -> a; remove one of these `extends`"
    ]


def test_all_extends_problems_are_collected() -> None:
    messages = problems(
        "a:\n  extends: nope\nb:\n  extends: 42\nc:\n  extends: stages\nstages: [x]\nd:\n  extends: [a, e]\n"
    )
    assert len(messages) == 4
    assert "extends `nope`, which is not defined" in messages[0]
    assert "extends must be a job name" in messages[1]
    assert "extends `stages`, which is not a job" in messages[2]
    assert "extends `e`, which is not defined" in messages[3]


# --- !reference (conformance case `reference`) --------------------------------------------------------

REFERENCE_BASE = """---
.setup:
  variables:
    MYVAR: Yoyo
  script:
    - !reference [.base, script]
    - echo "Setting something general up"

.base:
  script:
    - !reference [.ancient, script]
    - echo "Base"

.ancient:
  script:
    - echo "Ancient"
"""

REFERENCE_MAIN = """---
include:
  - local: .gitlab-ci-base.yml

test-job:
  variables:
    MYVAR: !reference [.setup, variables, MYVAR]
  script:
    - !reference [.jibof2, script]
    - echo ${MYVAR}

.arr:
  - echo "array root"

.jibof2:
  script:
    - !reference [.jibof, script]

.jibof:
  script:
    - !reference [.setup, script]
    - !reference [.arr]

.issue-909:
  cache:
    - echo TEST

issue-909:
  script:
    - !reference [.issue-909, cache]
"""


def flatten(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        out.extend(flatten(item) if isinstance(item, list) else [item])
    return out


def test_reference_case(tmp_path: Path) -> None:
    root = resolved(tmp_path, REFERENCE_MAIN, {".gitlab-ci-base.yml": REFERENCE_BASE})
    job = root["test-job"]
    assert job["variables"] == {"MYVAR": "Yoyo"}
    script = job["script"]
    assert isinstance(script, LocList)
    assert isinstance(script[0], LocList)  # a reference in a list stays a nested list
    assert flatten(script) == [
        'echo "Ancient"',
        'echo "Base"',
        'echo "Setting something general up"',
        'echo "array root"',
        "echo ${MYVAR}",
    ]
    assert plain(root["issue-909"]) == {"script": [["echo TEST"]]}
    # The resolved list keeps the marks of where its items were written.
    assert script[0][0][0][0].item_marks[0].file == ".gitlab-ci-base.yml"


def test_reference_after_extends(tmp_path: Path) -> None:
    # reference/.gitlab-ci-complex.yml: the referenced key exists only through extends.
    root = resolved(
        tmp_path,
        ".default-variables:\n  variables:\n    FOO: foo\n"
        ".variables-wrapper:\n  variables:\n    !reference [.default-variables, variables]\n"
        ".variables:\n  extends: .variables-wrapper\n"
        "job:\n  variables: !reference [.variables, variables]\n  script:\n    - echo $FOO\n",
    )
    assert plain(root["job"]) == {"variables": {"FOO": "foo"}, "script": ["echo $FOO"]}


def test_a_jobs_own_mapping_replaces_an_inherited_reference(tmp_path: Path) -> None:
    # GitLab merges extends before it resolves references: a reference is not a mapping, so the
    # job's own `variables:` replaces it (reference/.gitlab-ci-1.yml; gitlab-ci-local merges instead).
    root = resolved(
        tmp_path,
        ".somevariables:\n  variables:\n    HESTHEST: ponypony\n"
        ".something:\n  variables: !reference [.somevariables, variables]\n"
        "test-job:\n  extends: [.something]\n  variables:\n    NICENESS: byrdalos\n  script: [echo]\n",
    )
    assert plain(root["test-job"]["variables"]) == {"NICENESS": "byrdalos"}
    assert plain(root[".something"]["variables"]) == {"HESTHEST": "ponypony"}


def test_reference_to_a_top_level_scalar_through_includes(tmp_path: Path) -> None:
    root = resolved(
        tmp_path,
        "include: 'b.yml'\njob:\n  image: !reference [.common/util-image]\n  script: [works]\n",
        {
            "b.yml": "include: o.yml\n.common/util-image: !reference [.other/image]\n",
            "o.yml": ".other/image: bash\n",
        },
    )
    assert root["job"]["image"] == "bash"


def test_references_in_top_level_keywords(tmp_path: Path) -> None:
    root = resolved(
        tmp_path,
        ".hidden:\n  script: [echo hi]\njob:\n  script: [x]\n"
        "after_script:\n  - !reference [.hidden, script]\n",
    )
    assert plain(root["job"]["after_script"]) == [["echo hi"]]


def test_rules_reference(tmp_path: Path) -> None:
    root = resolved(
        tmp_path,
        ".base:\n  rules:\n    - if: $X\n      when: always\n"
        ".t:\n  extends: [.base]\n  rules:\n    - !reference [.base, rules]\n"
        "job:\n  extends: [.t]\n  script: [x]\n  rules: !reference [.t, rules]\n",
    )
    assert plain(root["job"]["rules"]) == [[{"if": "$X", "when": "always"}]]


def test_ten_nested_references_are_allowed(tmp_path: Path) -> None:
    text = ".s1:\n  - echo test\n" + "".join(f".s{i}:\n  - !reference [.s{i - 1}]\n" for i in range(2, 11))
    root = resolved(tmp_path, text + "test:\n  script:\n    - !reference [.s10]\n")
    assert flatten(root["test"]["script"]) == ["echo test"]


def test_eleven_nested_references_are_an_error() -> None:
    text = ".s1:\n  - echo test\n" + "".join(f".s{i}:\n  - !reference [.s{i - 1}]\n" for i in range(2, 12))
    messages = problems(text + "test:\n  script:\n    - !reference [.s11]\n")
    assert any("nests !reference tags 11 levels deep; GitLab allows 10" in m for m in messages)


def test_circular_reference_chain() -> None:
    assert problems("test-job:\n  script:\n    - !reference [test-job, script]\n") == [
        ".gitlab-ci.yml:3:7: !reference [test-job, script] is part of a circular chain: "
        "[test-job, script] -> [test-job, script]"
    ]


def test_indirect_circular_chain() -> None:
    (message,) = problems("a: !reference [b]\nb: !reference [a]\n")
    assert "is part of a circular chain" in message


@pytest.mark.parametrize(
    "ref, text",
    [
        ("[.setpu, script]", 'no job `.setpu` (did you mean ".setup"?)'),
        ("[.setup, scirpt]", '`.setup` has no key `scirpt` (did you mean "script"?)'),
        ("[.setup, script, x]", "`.setup.script` is not a mapping"),
        ("[.setup, empty]", "its value is empty"),
    ],
)
def test_missing_references_are_located(ref: str, text: str) -> None:
    messages = problems(f".setup:\n  script: [a]\n  empty:\njob:\n  script:\n    - !reference {ref}\n")
    assert messages[0].startswith(".gitlab-ci.yml:6:7: !reference ")
    assert "could not be found" in messages[0]
    assert text in messages[0]


def test_reference_bomb_is_stopped() -> None:
    # Each level references the one below ten times: 10**8 values if expanded.
    text = ".r0: [a, b, c, d, e, f, g, h, i, j]\n" + "".join(
        f".r{i}:\n" + "".join(f"  - !reference [.r{i - 1}]\n" for _ in range(10)) for i in range(1, 8)
    )
    messages = problems(text + "job:\n  script:\n    - !reference [.r7]\n")
    assert any("expands to more than 1,000,000 values" in m for m in messages)


# --- default: -------------------------------------------------------------------------------------


def test_default_fills_unset_keys(tmp_path: Path) -> None:
    root = resolved(
        tmp_path,
        "default:\n  image: ruby\n  before_script: [setup]\n  retry: 2\n"
        "a:\n  script: [x]\n"
        "b:\n  image: alpine\n  script: [y]\n"
        ".hidden:\n  script: [z]\n"
        "t:\n  trigger: other\n",
    )
    assert plain(root["a"]) == {"script": ["x"], "image": "ruby", "before_script": ["setup"], "retry": 2}
    assert root["a"].key_marks["image"] == Mark(".gitlab-ci.yml", 2, 3)
    assert root["b"]["image"] == "alpine"
    assert plain(root[".hidden"]) == {"script": ["z"]}
    assert plain(root["t"]) == {"trigger": "other"}


def test_extended_keys_count_as_set(tmp_path: Path) -> None:
    root = resolved(
        tmp_path,
        "default:\n  image: ruby\n.base:\n  image: alpine\njob:\n  extends: .base\n  script: [x]\n",
    )
    assert root["job"]["image"] == "alpine"


def test_inherit_default(tmp_path: Path) -> None:
    root = resolved(
        tmp_path,
        "default:\n  image: ruby\n  tags: [t]\n  interruptible: true\n"
        "none:\n  inherit:\n    default: false\n  script: [x]\n"
        "some:\n  inherit:\n    default: [tags]\n    variables: false\n  script: [x]\n",
    )
    assert plain(root["none"]) == {"inherit": {"default": False}, "script": ["x"]}
    assert plain(root["some"]) == {
        "inherit": {"default": ["tags"], "variables": False},
        "script": ["x"],
        "tags": ["t"],
    }


def test_deprecated_globals_act_as_defaults(tmp_path: Path) -> None:
    root = resolved(
        tmp_path,
        "image: ruby\nservices: [db]\nbefore_script: [b]\nafter_script: [a]\ncache: {paths: [c]}\n"
        "default:\n  tags: [t]\njob:\n  script: [x]\n",
    )
    assert plain(root["job"]) == {
        "script": ["x"],
        "tags": ["t"],
        "image": "ruby",
        "services": ["db"],
        "cache": {"paths": ["c"]},
        "before_script": ["b"],
        "after_script": ["a"],
    }


def test_global_and_default_together_is_gitlabs_error() -> None:
    messages = problems("image: ruby\ndefault:\n  image: alpine\njob:\n  script: [x]\n")
    assert messages == [
        ".gitlab-ci.yml:1:1: image is defined both at the top level and in `default:`; keep only the one "
        "in `default:` (top-level image is deprecated)"
    ]


def test_unknown_default_keys_and_bad_inherit_are_left_to_the_builder(tmp_path: Path) -> None:
    # The IR builder reports these (with every other keyword problem); resolve() only skips them.
    root = resolved(
        tmp_path,
        "default:\n  imag: ruby\n  tags: [t]\njob:\n  inherit:\n    default: [imge, tags]\n  script: [x]\n"
        "other:\n  inherit: {default: 3}\n  script: [y]\n",
    )
    assert plain(root["job"]) == {"inherit": {"default": ["imge", "tags"]}, "script": ["x"], "tags": ["t"]}
    assert root["other"]["tags"] == ["t"]


def test_load_document_returns_the_document_too(tmp_path: Path) -> None:
    (tmp_path / ".gitlab-ci.yml").write_text("include: a.yml\njob:\n  extends: .a\n")
    (tmp_path / "a.yml").write_text(".a:\n  script: [x]\n")
    root, doc = load_document(tmp_path, ".gitlab-ci.yml", RuleContext(variables={}, project_dir=tmp_path))
    assert plain(root["job"]) == {"script": ["x"]}
    assert doc.files == (".gitlab-ci.yml", "a.yml")
    assert "extends" in doc.root["job"]  # resolve() does not change the document


def test_references_nested_too_deeply_give_a_pipeline_error(tmp_path: Path) -> None:
    # Each file level is within the loader's 100, but ten references stack them past Python's stack.
    def deep(n: int, leaf: str) -> str:
        return "[" * n + leaf + "]" * n

    text = "job:\n  script: " + deep(90, "!reference [.s10]") + "\n"
    text += "".join(f".s{i}: " + deep(95, f"!reference [.s{i - 1}]") + "\n" for i in range(10, 1, -1))
    text += ".s1: " + deep(95, "x") + "\n"
    with pytest.raises(PipelineError, match="nested too deeply"):
        resolved(tmp_path, text)
