"""The YAML loader: values with marks, YAML features, and every limit as a located PipelineError."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aicd.errors import PipelineError
from aicd.pipeline.loader import load_file, load_file_with_spec, load_text, load_text_with_spec
from aicd.pipeline.nodes import LocList, LocMap, Mark, Reference


def error_of(text: str, display: str = "ci.yml") -> str:
    with pytest.raises(PipelineError) as info:
        load_text(text, display)
    return str(info.value)


# --- values and marks ------------------------------------------------------------------


def test_mappings_and_sequences_carry_one_based_marks() -> None:
    root = load_text("build:\n  script:\n    - make\n    - make test\n", "ci/build.yml")
    assert isinstance(root, LocMap)
    assert root.mark == Mark("ci/build.yml", 1, 1)
    assert root.key_marks["build"] == Mark("ci/build.yml", 1, 1)
    job = root["build"]
    assert isinstance(job, LocMap)
    assert job.key_marks["script"] == Mark("ci/build.yml", 2, 3)
    script = job["script"]
    assert isinstance(script, LocList)
    assert script == ["make", "make test"]
    assert script.mark == Mark("ci/build.yml", 3, 5)
    assert script.item_marks == [Mark("ci/build.yml", 3, 7), Mark("ci/build.yml", 4, 7)]


def test_flow_collections_have_marks_too() -> None:
    root = load_text("a: {b: [x, y]}\n", "f.yml")
    assert root["a"].mark == Mark("f.yml", 1, 4)
    assert root["a"]["b"].item_marks == [Mark("f.yml", 1, 9), Mark("f.yml", 1, 12)]


def test_scalars_follow_yaml_1_1_like_gitlab() -> None:
    root = load_text(
        "a: 1\nb: 1.5\nc: true\nd: yes\ne: off\nf: ~\ng: '1'\nh: 012\ni: 0x10\n"
        "j: 2024-01-31\nk: text\nl: =\n",
        "s.yml",
    )
    assert root == {
        "a": 1,
        "b": 1.5,
        "c": True,
        "d": True,
        "e": False,
        "f": None,
        "g": "1",
        "h": 10,
        "i": 16,
        "j": "2024-01-31",  # dates stay text
        "k": "text",
        "l": "=",
    }


def test_non_string_keys_become_strings() -> None:
    root = load_text("1: a\ntrue: b\n1.5: c\n~: d\n", "k.yml")
    assert list(root) == ["1", "true", "1.5", ""]


def test_explicit_tags_and_block_scalars() -> None:
    root = load_text("a: !!str 1\nb: !!int '7'\nc: |\n  line1\n  line2\nd: ! 12\n", "t.yml")
    assert root == {"a": "1", "b": 7, "c": "line1\nline2\n", "d": "12"}


def test_a_complex_key_is_an_error() -> None:
    assert "a mapping key must be a plain value" in error_of("? [a, b]\n: c\n")


# --- anchors, aliases, merge keys ---------------------------------------------------------


def test_anchors_and_aliases() -> None:
    root = load_text("a: &x [1, 2]\nb: *x\nc: &s hello\nd: *s\n", "a.yml")
    assert root["b"] == [1, 2]
    assert root["d"] == "hello"


def test_merge_key_with_explicit_keys_winning() -> None:
    text = ".base: &base\n  image: alpine\n  stage: test\njob:\n  stage: build\n  <<: *base\n"
    root = load_text(text, "m.yml")
    assert root["job"] == {"image": "alpine", "stage": "build"}
    # A merged key remembers where it was written (in the anchor).
    assert root["job"].key_marks["image"] == Mark("m.yml", 2, 3)
    assert root["job"].key_marks["stage"] == Mark("m.yml", 5, 3)


def test_merge_key_list_earlier_mapping_wins() -> None:
    text = "a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc:\n  <<: [*a, *b]\n  w: 0\n"
    assert load_text(text, "m.yml")["c"] == {"x": 1, "y": 1, "z": 2, "w": 0}


def test_merge_key_with_inline_mapping() -> None:
    assert load_text("c:\n  <<: {x: 1}\n  y: 2\n", "m.yml")["c"] == {"x": 1, "y": 2}


def test_merge_key_with_a_scalar_is_an_error() -> None:
    message = error_of("c:\n  <<: text\n")
    assert "ci.yml:2:7:" in message
    assert "merge key" in message


def test_undefined_alias_is_located() -> None:
    assert error_of("a: 1\nb: *nope\n").startswith("ci.yml:2:4: alias *nope has no anchor")


def test_recursive_alias_is_an_error() -> None:
    assert "recursive alias" in error_of("a: &a [1, *a]\n")


# --- !reference -------------------------------------------------------------------------------


def test_reference_becomes_a_reference_with_its_mark() -> None:
    root = load_text("job:\n  script:\n    - !reference [.setup, script]\n    - echo\n", "r.yml")
    ref = root["job"]["script"][0]
    assert ref == Reference((".setup", "script"), Mark("r.yml", 3, 7))
    assert root["job"]["script"][1] == "echo"


def test_reference_as_a_mapping_value() -> None:
    root = load_text("job:\n  rules: !reference [.rules, rules]\n", "r.yml")
    assert root["job"]["rules"] == Reference((".rules", "rules"), Mark("r.yml", 2, 10))


@pytest.mark.parametrize(
    "text",
    [
        "a: !reference .x\n",
        "a: !reference {x: 1}\n",
        "a: !reference []\n",
        "a: !reference [[x]]\n",
    ],
)
def test_reference_of_the_wrong_shape_is_an_error(text: str) -> None:
    assert "!reference needs a list of names" in error_of(text)


# --- documents -----------------------------------------------------------------------------------


def test_leading_document_marker_is_normal() -> None:
    assert load_text("---\njob:\n  script: x\n", "d.yml") == {"job": {"script": "x"}}


def test_spec_header_document() -> None:
    loaded = load_text_with_spec("spec:\n  inputs:\n    name:\n---\njob:\n  script: echo\n", "h.yml")
    assert loaded.content == {"job": {"script": "echo"}}
    assert loaded.content.key_marks["job"] == Mark("h.yml", 5, 1)
    assert loaded.spec == {"inputs": {"name": None}}
    assert loaded.header is not None


def test_header_with_other_keys_is_an_error() -> None:
    message = error_of("spec:\n  inputs: {}\nstages: [a]\n---\njob: {script: x}\n")
    assert "ci.yml:3:1:" in message
    assert "only `spec:`" in message


def test_two_documents_without_header_use_the_first_and_warn() -> None:
    loaded = load_text_with_spec("a: {script: x}\n---\nb: {script: y}\n", "w.yml")
    assert list(loaded.content) == ["a"]
    assert [w.severity for w in loaded.warnings] == ["warning"]
    assert loaded.warnings[0].line == 3


def test_three_documents_are_an_error() -> None:
    assert "3 YAML documents" in error_of("a: 1\n---\nb: 2\n---\nc: 3\n")


def test_empty_documents_are_skipped() -> None:
    assert load_text("---\n---\njob: {script: x}\n", "e.yml") == {"job": {"script": "x"}}


# --- duplicated keys ---------------------------------------------------------------------------


def test_duplicated_keys_last_wins_with_a_warning() -> None:
    # The conformance case duplicated-keys: GitLab (Ruby) and the reference runner keep the last.
    text = 'variables: &foo\n  FOO: "1"\n\nvariables: &bar\n  BAR: "2"\n\njob:\n  variables:\n    <<: *foo\n'
    loaded = load_text_with_spec(text, ".gitlab-ci.yml")
    assert loaded.content["variables"] == {"BAR": "2"}
    assert list(loaded.content) == ["variables", "job"]
    assert loaded.content.key_marks["variables"].line == 4
    assert loaded.content["job"]["variables"] == {"FOO": "1"}  # the first anchor is still usable
    (warning,) = loaded.warnings
    assert warning.severity == "warning"
    assert (warning.file, warning.line, warning.column) == (".gitlab-ci.yml", 4, 1)
    assert "duplicated key 'variables' (first at line 1)" in warning.message


# --- errors and limits ------------------------------------------------------------------------------


def test_syntax_error_has_line_column_and_problem() -> None:
    message = error_of("job:\n  script: [a, b\nother: 1\n")
    assert message.startswith("ci.yml:3:")
    assert "YAML syntax error" in message


def test_tabs_get_a_hint() -> None:
    message = error_of("job:\n\tscript: x\n")
    assert message.startswith("ci.yml:2:1: YAML syntax error")
    assert "tabs" in message


def test_empty_file_and_comments_only() -> None:
    assert "the file is empty" in error_of("")
    assert "the file is empty" in error_of("# nothing here\n")


@pytest.mark.parametrize("text, kind", [("- a\n- b\n", "a list"), ("just text\n", "a string")])
def test_top_level_must_be_a_mapping(text: str, kind: str) -> None:
    message = error_of(text)
    assert "the top level must be a mapping" in message
    assert kind in message


def test_nul_byte_is_located() -> None:
    assert error_of("a: 1\nb: x\x00y\n").startswith("ci.yml:2:5: the file contains a NUL byte")


def test_control_character_is_located() -> None:
    message = error_of("a: 1\nb: x\x01\n")
    assert message.startswith("ci.yml:2:5:")
    assert "control character" in message


def test_bad_utf8_in_a_file_is_located(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(PipelineError) as info:
        load_file(path, "bad.yml")
    assert str(info.value).startswith("bad.yml:2:7: the file is not valid UTF-8 (byte 0xe9)")


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yml"
    path.write_bytes(b"\xef\xbb\xbfjob: {script: x}\n")
    assert load_file(path, "bom.yml") == {"job": {"script": "x"}}


def test_file_larger_than_10_mib(tmp_path: Path) -> None:
    path = tmp_path / "big.yml"
    path.write_bytes(b"a: " + b"x" * (20 * 1024 * 1024) + b"\n")
    with pytest.raises(PipelineError) as info:
        load_file(path, "big.yml")
    assert str(info.value) == "big.yml:1:1: file is 20.0 MiB; aicd reads pipeline files up to 10 MiB"


def test_text_larger_than_10_mib() -> None:
    assert "aicd reads pipeline files up to 10 MiB" in error_of("a: " + "x" * (11 * 1024 * 1024))


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="file not found"):
        load_file(tmp_path / "nope.yml", "nope.yml")
    with pytest.raises(PipelineError, match="is a directory"):
        load_file(tmp_path, "dir.yml")


def billion_laughs(levels: int = 9) -> str:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_names_the_line_of_the_alias() -> None:
    message = error_of(billion_laughs())
    # l5 expands to ~600,000 nodes: the 2nd *l5 (line 7, column 10) takes the file past 1,000,000.
    assert message.startswith("ci.yml:7:10:")
    assert "alias *l5 expands to" in message
    assert "1,000,000" in message


def test_many_aliases_within_the_limit_are_fine() -> None:
    root = load_text(billion_laughs(4), "ok.yml")
    assert len(root["l4"]) == 9


def test_deep_block_nesting_is_limited_to_100() -> None:
    text = "".join("  " * i + f"k{i}:\n" for i in range(150)) + "  " * 150 + "v\n"
    message = error_of(text)
    assert message.startswith("ci.yml:101:")
    assert "nested too deeply (more than 100 levels)" in message
    # 100 levels are fine.
    ok = "".join("  " * i + f"k{i}:\n" for i in range(99)) + "  " * 99 + "v\n"
    assert isinstance(load_text(ok, "ok.yml"), LocMap)


def test_depth_10000_flow_nesting() -> None:
    message = error_of("a: " + "[" * 10000 + "]" * 10000 + "\n")
    assert message.startswith("ci.yml:1:")
    assert "nested" in message


def test_depth_10000_block_nesting() -> None:
    # `- - - x` nests block sequences on one line.
    message = error_of("a:\n" + "- " * 10000 + "x\n")
    assert message.startswith("ci.yml:2:")
    assert "nested too deeply (more than 100 levels)" in message


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab: -[]{}&*!<>'\"\n\t#|,?%@`\x00\x85\ufeff1.~")), max_size=60))
def test_any_text_gives_a_map_or_a_pipeline_error(text: str) -> None:
    try:
        result = load_text(text, "fuzz.yml")
    except PipelineError as exc:
        assert exc.diagnostics and all(d.file == "fuzz.yml" for d in exc.diagnostics)
    else:
        assert isinstance(result, LocMap)


def test_load_file_with_spec_reads_the_header(tmp_path: Path) -> None:
    path = tmp_path / "t.yml"
    path.write_text("spec:\n  inputs:\n    a:\n      default: 1\n---\njob: {script: x}\n")
    loaded = load_file_with_spec(path, "t.yml")
    assert loaded.spec == {"inputs": {"a": {"default": 1}}}
    assert loaded.content == {"job": {"script": "x"}}


def test_load_document_is_reachable_from_the_loader(tmp_path: Path) -> None:
    from aicd.pipeline.loader import load_document
    from aicd.pipeline.rules import RuleContext

    (tmp_path / ".gitlab-ci.yml").write_text(".a:\n  script: [x]\njob:\n  extends: .a\n")
    root, doc = load_document(tmp_path, ".gitlab-ci.yml", RuleContext(variables={}, project_dir=tmp_path))
    assert root["job"] == {"script": ["x"]}
    assert doc.files == (".gitlab-ci.yml",)
