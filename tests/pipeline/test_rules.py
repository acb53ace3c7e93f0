"""rules: evaluation, globs (Ruby fnmatch as GitLab uses it) and lint diagnostics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aicd.errors import PipelineError
from aicd.pipeline.nodes import LocList, LocMap, Mark, Reference
from aicd.pipeline.rules import (
    EXISTS_CHECK_LIMIT,
    RuleContext,
    RuleOutcome,
    check_rules,
    evaluate_rules,
    expand_braces,
    glob_match,
)

# --- globs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("foo", "foo", True),
        ("foo", "foo/bar", False),
        ("foo", "xfoo", False),
        ("*", "file.txt", True),
        ("*", "dir/file.txt", False),  # * does not cross /
        ("*", ".hidden", True),  # FNM_DOTMATCH
        ("*.md", "README.md", True),
        ("*.md", "docs/README.md", False),
        ("docs/*", "docs/a.md", True),
        ("docs/*", "docs/sub/a.md", False),
        ("docs/*", "docs/.gitkeep", True),
        ("**/*.json", "a.json", True),  # **/ matches zero directories
        ("**/*.json", "a/b/c.json", True),
        ("**/*.json", ".config/x.json", True),
        ("src/**/*.py", "src/a.py", True),
        ("src/**/*.py", "src/x/y/z.py", True),
        ("src/**/*.py", "lib/src/a.py", False),
        ("src/**/*", "src/.hidden/x", True),
        ("src/**", "src/a", True),  # ** not followed by / is *
        ("src/**", "src/a/b", False),
        ("a**/b", "ab/b", True),
        ("a**/b", "a/x/b", False),
        ("file?.txt", "file1.txt", True),
        ("file?.txt", "file12.txt", False),
        ("a?b", "a/b", False),
        ("file[0-9].txt", "file7.txt", True),
        ("file[0-9].txt", "filex.txt", False),
        ("file[!0-9].txt", "filex.txt", True),
        ("file[^0-9].txt", "file7.txt", False),
        ("a[/]b", "a/b", False),  # a class never matches /
        ("[]]x", "]x", True),
        ("[a-", "[a-", True),  # unterminated class: literal
        ("*.{rb,py,sh}", "x.py", True),
        ("*.{rb,py,sh}", "x.js", False),
        ("{src,lib}/**/*.{c,h}", "lib/a/b.h", True),
        ("{src,lib}/**/*.{c,h}", "test/a.c", False),
        ("a{b,c{d,e}}f", "acef", True),
        ("a{b,c{d,e}}f", "acf", False),
        ("{a,}x", "x", True),
        ("{unbalanced", "{unbalanced", True),
        ("\\*literal", "*literal", True),
        ("\\*literal", "xliteral", False),
        ("a.b", "axb", False),  # . is literal
        ("(x)+", "(x)+", True),  # regex characters are literal
        ("Foo", "foo", False),  # case-sensitive
        ("existsDir/**/*", "existsDir/existDirNested/recursive.file", True),
        ("existsDir/**/*", "existsDir/.gitkeep", True),
    ],
)
def test_glob_match(pattern: str, path: str, expected: bool) -> None:
    assert glob_match(pattern, path) is expected


def test_expand_braces() -> None:
    assert expand_braces("a{b,c{d,e}}f") == ["abf", "acdf", "acef"]
    assert expand_braces("x") == ["x"]
    assert expand_braces("\\{a,b}") == ["\\{a,b}"]


# --- helpers: rules as the YAML loader gives them -------------------------------------


def loc(value: Any, line: int = 10) -> Any:
    """Plain YAML-like data -> LocMap/LocList with marks (line grows per item)."""
    if isinstance(value, dict):
        out = LocMap(mark=Mark(".gitlab-ci.yml", line, 5))
        for i, (k, v) in enumerate(value.items()):
            out[k] = loc(v, line + i)
            out.key_marks[k] = Mark(".gitlab-ci.yml", line + i, 7)
        return out
    if isinstance(value, list):
        seq = LocList(
            [loc(v, line + 10 * i) for i, v in enumerate(value)], mark=Mark(".gitlab-ci.yml", line, 3)
        )
        seq.item_marks = [Mark(".gitlab-ci.yml", line + 10 * i, 5) for i in range(len(value))]
        return seq
    return value


def ctx(variables: dict[str, str] | None = None, **kw: Any) -> RuleContext:
    return RuleContext(variables=variables or {}, **kw)


# --- evaluation -------------------------------------------------------------------------


MAIN = {"CI_COMMIT_BRANCH": "main", "CI_PIPELINE_SOURCE": "push", "CI_DEFAULT_BRANCH": "main"}


@pytest.mark.parametrize(
    ("rules", "variables", "expected"),
    [
        ([], MAIN, RuleOutcome(when="never")),
        ([{"if": "$CI_COMMIT_TAG"}], MAIN, RuleOutcome(when="never")),
        ([{"if": "$CI_COMMIT_BRANCH"}], MAIN, RuleOutcome(when="on_success", rule_index=0)),
        ([{"when": "always"}], {}, RuleOutcome(when="always", rule_index=0)),
        ([{}], {}, RuleOutcome(when="on_success", rule_index=0)),  # no clause: matches
        (
            [
                {"if": "$CI_COMMIT_TAG", "when": "manual"},
                {"if": "$CI_COMMIT_BRANCH == 'main'", "when": "delayed", "start_in": "5 min"},
            ],
            MAIN,
            RuleOutcome(when="delayed", start_in="5 min", rule_index=1),
        ),
        (
            [{"if": "$CI_COMMIT_BRANCH", "when": "never"}, {"when": "always"}],
            MAIN,
            RuleOutcome(when="never", rule_index=0),
        ),
        (
            [{"if": "$CI_COMMIT_BRANCH", "allow_failure": True, "interruptible": False, "needs": ["build"]}],
            MAIN,
            RuleOutcome(
                when="on_success", allow_failure=True, interruptible=False, needs=["build"], rule_index=0
            ),
        ),
        (
            [{"if": "$CI_PIPELINE_SOURCE == 'schedule'"}, {"variables": {"X": "1"}}],
            MAIN,
            RuleOutcome(when="on_success", variables={"X": "1"}, rule_index=1),
        ),
        ([{"if": "$CI_COMMIT_BRANCH != $CI_DEFAULT_BRANCH"}], MAIN, RuleOutcome(when="never")),
        (
            [[{"if": "$NOPE"}], [{"when": "manual"}]],
            MAIN,
            RuleOutcome(when="manual", rule_index=1),
        ),  # nested lists
        ([{"start_in": 30, "when": "delayed"}], {}, RuleOutcome(when="delayed", start_in="30", rule_index=0)),
    ],
)
def test_evaluate_rules(rules: list[Any], variables: dict[str, str], expected: RuleOutcome) -> None:
    assert evaluate_rules(loc(rules), ctx(variables)) == expected
    assert evaluate_rules(rules, ctx(variables)) == expected  # plain dicts work too


def test_default_when_is_the_jobs_when() -> None:
    out = evaluate_rules([{"if": "$A"}], ctx({"A": "1"}), default_when="manual")
    assert out.when == "manual"
    assert (
        evaluate_rules([{"if": "$A", "when": "always"}], ctx({"A": "1"}), default_when="manual").when
        == "always"
    )


@pytest.mark.parametrize(
    ("changes", "changed", "expected"),
    [
        (["foo"], None, True),  # no push diff: always true
        (["foo"], [], False),
        (["foo"], ["foo"], True),
        (["foo"], ["foo/bar"], False),
        (["src/**/*.py"], ["README.md", "src/a/b.py"], True),
        (["*.md"], ["docs/a.md"], False),
        (["**/*.md"], ["docs/a.md"], True),
        (["${FILE}"], ["foo"], True),  # variables expanded (matrix FILE=foo)
        (["$DIR/*"], ["sub/x"], True),
        ([""], ["foo"], False),
        ({"paths": ["foo"]}, ["foo"], True),
        ({"paths": ["foo"]}, ["bar"], False),
        ({"paths": ["foo"], "compare_to": "main"}, ["foo"], True),  # falls back to changed_files
        ([], ["foo"], False),
    ],
)
def test_changes(changes: Any, changed: list[str] | None, expected: bool) -> None:
    c = ctx({"FILE": "foo", "DIR": "sub"}, changed_files=changed)
    assert (evaluate_rules(loc([{"changes": changes}]), c).when == "on_success") is expected


def test_changes_compare_to_uses_the_callback_with_expanded_ref() -> None:
    asked: list[str] = []

    def since(ref: str) -> list[str]:
        asked.append(ref)
        return ["api/x.py"] if ref == "develop" else []

    rules = loc([{"changes": {"paths": ["api/**/*"], "compare_to": "$BASE"}}])
    out = evaluate_rules(rules, ctx({"BASE": "develop"}, changed_files=[], changes_since=since))
    assert out.when == "on_success"
    assert asked == ["develop"]
    out = evaluate_rules(rules, ctx({"BASE": "main"}, changed_files=["api/x.py"], changes_since=since))
    assert out.when == "never"


def test_changes_compare_to_error_is_a_located_pipeline_error() -> None:
    from aicd.errors import GitError

    def since(ref: str) -> list[str]:
        raise GitError(f"{ref!r} is not a branch, tag or commit")

    rules = loc([{"changes": {"paths": ["x"], "compare_to": "nope"}}])
    with pytest.raises(PipelineError) as info:
        evaluate_rules(rules, ctx(changes_since=since), where="jobs.test.rules")
    diag = info.value.diagnostics[0]
    assert "jobs.test.rules[0].changes.compare_to: cannot compare with 'nope'" in diag.message
    assert (diag.file, diag.line) == (".gitlab-ci.yml", 11)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    for rel in [
        "exists.file",
        "existsDir/.gitkeep",
        "existsDir/existDirNested/.gitkeep",
        "existsDir/existDirNested/recursive.file",
        "src/app/main.py",
        ".config/settings.json",
        ".git/HEAD",
        ".git/objects/ab/cdef",
        ".aicd/runs/1.log",
        "Dockerfile",
    ]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    (root / "emptydir").mkdir()
    return root


@pytest.mark.parametrize(
    ("exists", "expected"),
    [
        (["exists.file"], True),
        ({"paths": ["exists.file"]}, True),
        (["not-exists.file"], False),
        (["existsDir/*"], True),
        (["existsDir/**/*"], True),
        (["notExistsDir/*"], False),
        (["notExistsDir/**/*"], False),
        (["${DIR}/recursive.file"], True),
        ([""], False),
        (["emptydir"], False),  # directories are not files
        (["existsDir"], False),
        (["**/*.py"], True),
        (["src/**/main.{py,rb}"], True),
        (["**/settings.json"], True),  # dot directories are searched
        (["*.json"], False),
        (["HEAD"], False),
        (["**/HEAD"], False),  # .git is not part of the project
        ([".git/HEAD"], False),  # not even as an exact path
        ([".aicd/runs/1.log"], False),
        (["./Dockerfile"], True),
        (["src/../Dockerfile"], True),
        (["**/*.log"], False),  # .aicd is not part of the project
        (["nope", "Dockerfile"], True),
        (["../project/Dockerfile"], False),  # outside the project
        ([], False),
    ],
)
def test_exists(project: Path, exists: Any, expected: bool) -> None:
    c = ctx({"DIR": "existsDir/existDirNested"}, project_dir=project)
    assert (evaluate_rules(loc([{"exists": exists}]), c).when == "on_success") is expected


def test_exists_without_project_dir_is_false() -> None:
    assert evaluate_rules([{"exists": ["*"]}], ctx()).when == "never"


def test_exists_with_given_file_list() -> None:
    c = ctx(files=["a/b.txt", "c.md"])
    assert evaluate_rules([{"exists": ["a/*.txt"]}], c).when == "on_success"
    assert evaluate_rules([{"exists": ["c.md"]}], c).when == "on_success"
    assert evaluate_rules([{"exists": ["d.md"]}], c).when == "never"


def test_exists_check_limit_makes_patterned_globs_match() -> None:
    files = [f"f{i}.txt" for i in range(EXISTS_CHECK_LIMIT + 5)]
    c = ctx(files=files)
    assert evaluate_rules([{"exists": ["*.py"]}], c).when == "on_success"  # GitLab: past the limit, match
    assert evaluate_rules([{"exists": ["nope.py"]}], c).when == "never"  # exact paths still checked
    small = ctx(files=files[:100])
    assert evaluate_rules([{"exists": ["*.py"]}], small).when == "never"


def test_all_present_clauses_must_hold(project: Path) -> None:
    rule = {"if": "$GO", "changes": ["src/**/*"], "exists": ["Dockerfile"], "when": "manual"}
    base = {"project_dir": project, "changed_files": ["src/app/main.py"]}
    assert evaluate_rules([rule], ctx({"GO": "1"}, **base)).when == "manual"
    assert evaluate_rules([rule], ctx({}, **base)).when == "never"
    assert evaluate_rules([rule], ctx({"GO": "1"}, project_dir=project, changed_files=["x"])).when == "never"
    assert evaluate_rules([{**rule, "exists": ["Nope"]}], ctx({"GO": "1"}, **base)).when == "never"


def test_project_files_are_walked_once(project: Path) -> None:
    c = ctx(project_dir=project)
    first = c.project_files()
    assert first is c.project_files()
    assert "existsDir/.gitkeep" in first
    assert not any(p.startswith((".git/", ".aicd/")) for p in first)


# --- errors and lint ------------------------------------------------------------------


def test_bad_if_raises_located_pipeline_error() -> None:
    rules = loc([{"when": "always"}, {"if": '$A = "x"'}])
    with pytest.raises(PipelineError) as info:
        evaluate_rules(rules, ctx(), where="jobs.test.rules")
    (diag,) = info.value.diagnostics
    assert diag.file == ".gitlab-ci.yml"
    assert (diag.line, diag.column) == (20, 7)
    assert diag.path == "jobs.test.rules[1].if"
    assert "unexpected '=' at column 4" in diag.message
    assert str(diag).startswith(".gitlab-ci.yml:20:7: jobs.test.rules[1].if:")


def test_non_dict_rule_raises_pipeline_error() -> None:
    with pytest.raises(
        PipelineError, match=r"rules\[0\]: a rule must be a mapping .* not a string \('\$A'\)"
    ):
        evaluate_rules(loc(["$A"]), ctx())


def test_evaluate_reports_every_problem_at_once() -> None:
    with pytest.raises(PipelineError) as info:
        evaluate_rules(loc([{"if": "$A ="}, {"when": "sometimes"}, 3]), ctx())
    assert len(info.value.diagnostics) == 3


@pytest.mark.parametrize(
    ("rules", "messages"),
    [
        ([{"if": "$A"}, {"when": "always"}], []),
        ([{"iff": "$A"}], ["rules[0].iff: unknown rule key 'iff'; allowed keys: if, changes"]),
        ([{"when": "sometimes"}], ["rules[0].when: unknown when 'sometimes'; use one of on_success"]),
        ([{"when": "on_failure"}], []),
        ([{"if": "$A =~ /[/"}], ["rules[0].if: bad regex /[/ at column 7: unterminated character set"]),
        ([{"if": 3}], ["rules[0].if: must be an expression string"]),
        ([{"allow_failure": "yes"}], ["rules[0].allow_failure: must be true or false, not a string ('yes')"]),
        ([{"interruptible": 1}], ["rules[0].interruptible: must be true or false, not a number (1)"]),
        ([{"changes": "src/*"}], ["rules[0].changes: must be a list of file globs"]),
        ([{"changes": {"path": ["x"]}}], ["unknown key 'path'", "needs a `paths:` list"]),
        (
            [{"changes": {"paths": ["x"], "compare_to": 1}}],
            ["compare_to must be a branch, tag or commit SHA"],
        ),
        ([{"changes": ["ok", 5]}], ["every path must be a string, not a number (5)"]),
        (
            [{"exists": {"paths": ["x"], "project": "g/p"}}],
            ["exists:project and exists:ref are not supported"],
        ),
        ([{"variables": ["A=1"]}], ["rules[0].variables: must be a mapping of NAME: value, not a list"]),
        ([{"variables": {"A": ["x"]}}], ["A: a variable value must be a string or number"]),
        ([{"variables": {"A": 1, "B": None, "C": {"value": "x", "expand": False}}}], []),
        ([{"needs": "build"}], ["rules[0].needs: must be a list of job names"]),
        ([{"start_in": "1 day", "when": "manual"}], ["start_in only applies with when: delayed"]),
        ([{"start_in": True, "when": "delayed"}], ["rules[0].start_in: must be a duration"]),
        ([{"start_in": "1 day"}], []),  # the job's own when may be delayed
        (["$A"], ["rules[0]: a rule must be a mapping"]),
        ([None], ["rules[0]: a rule must be a mapping such as `- if: $CI_COMMIT_BRANCH`, not empty (null)"]),
        ([[{"if": "$A =="}]], ["rules[0][0].if: unexpected end of expression"]),
        ({"if": "$A"}, ["rules: rules must be a list"]),
    ],
)
def test_check_rules(rules: Any, messages: list[str]) -> None:
    diags = check_rules(loc(rules), "rules")
    assert len(diags) == len(messages), diags
    for diag, expected in zip(diags, messages, strict=True):
        assert expected in diag.message


def test_check_rules_marks_and_severity() -> None:
    diags = check_rules(
        loc([{"if": "$A"}, {"start_in": "1 h", "when": "manual", "bogus": 1}]), "jobs.deploy.rules"
    )
    by_path = {d.path: d for d in diags}
    assert by_path["jobs.deploy.rules[1].bogus"].severity == "error"
    assert (by_path["jobs.deploy.rules[1].bogus"].line, by_path["jobs.deploy.rules[1].bogus"].column) == (
        22,
        7,
    )
    assert by_path["jobs.deploy.rules[1].start_in"].severity == "warning"
    # warnings do not stop evaluation
    assert evaluate_rules(loc([{"start_in": "1 h", "when": "manual"}]), ctx()).when == "manual"


def test_unresolved_reference_is_reported() -> None:
    ref = Reference(("a", "rules"), Mark("ci.yml", 3, 4))
    (diag,) = check_rules(LocList([ref]), "rules")
    assert "unresolved !reference ['a', 'rules']" in diag.message
    assert (diag.file, diag.line) == ("ci.yml", 3)
    assert check_rules(None, "rules") == []


def test_replaced_context_walks_its_own_project(project: Path, tmp_path: Path) -> None:
    import dataclasses

    (tmp_path / "only-here.txt").write_text("x")
    c = ctx(project_dir=project)
    assert "Dockerfile" in c.project_files()
    other = dataclasses.replace(c, project_dir=tmp_path)
    assert other.project_files() == ["only-here.txt"]
    assert evaluate_rules([{"exists": ["*.txt"]}], other).when == "on_success"
    assert evaluate_rules([{"exists": ["*.txt"]}], c).when == "never"


def test_exists_absolute_path_is_not_a_project_path(project: Path) -> None:
    absolute = str(project / "Dockerfile")
    assert Path(absolute).is_file()
    assert evaluate_rules([{"exists": [absolute]}], ctx(project_dir=project)).when == "never"
