"""The rules:if expression language: GitLab's documented syntax and meaning."""

from __future__ import annotations

import pytest

from aicd.errors import AicdError, ExpressionError
from aicd.pipeline.expression import And, Compare, Or, Var, evaluate, parse

VARS = {
    "BRANCH": "main",
    "TAG": "v1.2.3",
    "EMPTY": "",
    "MSG": "Fix bug\n[skip e2e] please",
    "SOURCE": "push",
    "A": "a",
    "B": "b",
    "SAME": "a",
    "T": "t",
    "F_EMPTY": "",
    "RE": "/^ma/",
    "RE_I": "/^MA/i",
    "PLAIN": "ai",
    "BADRE": "/[/",
    "GITLAB_CI": "false",
    "SLASHES": "a/b/c",
}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        # presence
        ("$BRANCH", True),
        ("${BRANCH}", True),
        ("$EMPTY", False),
        ("$UNDEFINED", False),
        ("  $BRANCH  ", True),
        ('"text"', True),
        ('""', False),
        ("null", False),
        # equality
        ('$BRANCH == "main"', True),
        ("$BRANCH == 'main'", True),
        ('$BRANCH=="main"', True),
        ('$BRANCH != "main"', False),
        ('$BRANCH == "Main"', False),
        ('"main" == $BRANCH', True),
        ("$A == $SAME", True),
        ("$A == $B", False),
        ("$A != $B", True),
        ("$UNDEFINED == null", True),
        ("$EMPTY == null", False),
        ('$EMPTY == ""', True),
        ('$UNDEFINED == ""', False),
        ("$UNDEFINED != null", False),
        ("$BRANCH != null", True),
        ("null == $UNDEFINED", True),
        ("$UNDEFINED == $ALSO_UNDEFINED", True),
        ('${GITLAB_CI} == "true"', False),
        ('$GITLAB_CI == "false"', True),
        ('$BRANCH == "$BRANCH"', False),  # variables in strings are not expanded
        ("$BRANCH == '$BRANCH'", False),
        ('$EMPTY == "$EMPTY"', False),
        ('$SLASHES == "a/b/c"', True),
        ('$MSG == "Fix bug\n[skip e2e] please"', True),
        # regex
        ("$BRANCH =~ /^ma/", True),
        ("$BRANCH =~ /ai/", True),  # unanchored search
        ("$BRANCH =~ /^ai/", False),
        ("$BRANCH !~ /^ai/", True),
        ("$BRANCH =~ /^MAIN$/", False),
        ("$BRANCH =~ /^MAIN$/i", True),
        ("$TAG =~ /^v\\d+\\.\\d+\\.\\d+$/", True),
        ("$TAG =~ /^v[0-9]+(?:\\.[0-9]+){2}$/", True),
        ("$MSG =~ /\\[skip e2e\\]/", True),
        ("$MSG =~ /^\\[skip/", False),
        ("$MSG =~ /^\\[skip/m", True),  # m: ^ at line starts
        ("$MSG =~ /bug.\\[skip/", False),
        ("$MSG =~ /bug.\\[skip/s", True),  # s: . matches newline
        ("$MSG =~ /fix BUG/im", True),
        ("$SLASHES =~ /a\\/b/", True),  # escaped slash
        ("$SLASHES =~ /^a\\/c/", False),
        ("$BRANCH =~ /ma\\z/", False),  # RE2 \\z: end of text
        ("$BRANCH =~ /in\\z/", True),
        ("$BRANCH =~ /(?<first>m)ain/", True),  # RE2 named group
        ("$UNDEFINED =~ /.*/", True),  # undefined matches as ""
        ("$UNDEFINED =~ /^v/", False),
        ("$UNDEFINED !~ /^v/", True),
        ("$EMPTY =~ /^$/", True),
        ('"literal" =~ /ter/', True),
        # regex held in a variable
        ("$BRANCH =~ $RE", True),
        ("$BRANCH !~ $RE", False),
        ("$BRANCH =~ $RE_I", True),
        ("$BRANCH =~ $PLAIN", True),  # not /.../: literal substring
        ("$TAG =~ $PLAIN", False),
        ("$BRANCH =~ $UNDEFINED", False),
        ("$BRANCH !~ $UNDEFINED", True),
        # && binds tighter than ||
        ("$A && $B", True),
        ("$A && $UNDEFINED", False),
        ("$UNDEFINED || $A", True),
        ("$EMPTY || $UNDEFINED", False),
        ("$A || $UNDEFINED && $UNDEFINED", True),  # A || (U && U)
        ("$UNDEFINED && $UNDEFINED || $A", True),  # (U && U) || A
        ("($A || $UNDEFINED) && $UNDEFINED", False),
        ("$UNDEFINED && ($UNDEFINED || $A)", False),
        ("$A || $B == '1'", True),  # GitLab issue 358775: bare variable left of ||
        ('$B == "1" || $A', True),
        ("$UNDEFINED && $BRANCH =~ /ma/ || $T", True),  # GitLab issue 213008
        ('$A == "x" || $B == "b" && $T == "t" || $A == "y" && $B == "z"', True),
        ('$A == "x" || $B == "b" && $T == "x" || $A == "y" && $B == "z"', False),
        ('($BRANCH == "main" || $BRANCH == "develop") && $TAG', True),
        ('($BRANCH == "dev" || $BRANCH == "develop") && $TAG', False),
        ("((($A)))", True),
        ("( $A&&($B||$UNDEFINED) )&&$T", True),
        ('$SOURCE == "push" &&\n  $BRANCH == "main"', True),  # newlines are whitespace
        ("\t$A\t==\t'a'\t", True),
    ],
)
def test_evaluate(expr: str, expected: bool) -> None:
    assert evaluate(expr, VARS) is expected


@pytest.mark.parametrize(
    ("expr", "message", "column"),
    [
        ("", "empty expression", 1),
        ("   ", "empty expression", 1),
        ('$VAR = "x"', "unexpected '=' at column 6: did you mean '=='?", 6),
        ('$VARS  = "x"', "unexpected '=' at column 8", 8),
        ('$A ! "x"', "unexpected '!' at column 4", 4),
        ("$A & $B", "unexpected '&' at column 4: did you mean '&&'?", 4),
        ("$A | $B", "unexpected '|' at column 4: did you mean '||'?", 4),
        ("$A ==", "unexpected end of expression at column 6", 6),
        ("$A &&", "unexpected end of expression at column 6", 6),
        ("&& $A", "unexpected '&&' at column 1", 1),
        ("$A $B", "unexpected '$B' at column 4: expected an operator", 4),
        ('$A "x"', "unexpected '\"x\"' at column 4", 4),
        ("($A", "missing ')' to close the '(' at column 1", 4),
        ("(($A) || $B", "missing ')' to close the '(' at column 1", 12),
        ("$A)", "unexpected ')' at column 3", 3),
        ("()", "unexpected ')' at column 2", 2),
        ('$A == "x" == $B', "unexpected '==' at column 11: comparisons cannot be chained", 11),
        ('$A == "unterminated', "unterminated string starting at column 7", 7),
        ("$A == 'x\"", "unterminated string starting at column 7", 7),
        ("$A =~ /abc", "unterminated regex starting at column 7", 7),
        ("$A =~ /[/", "bad regex /[/ at column 7: unterminated character set", 7),
        ("$A =~ /(a/", "bad regex /(a/ at column 7: missing ), unterminated subpattern", 7),
        ("$A =~ /a/g", "bad regex /a/g at column 7: unknown flag 'g'", 7),
        ("$A =~ /a/U", "flag 'U' (ungreedy) is not supported", 7),
        ('$A =~ "a"', "the right side of =~ must be a /regex/ or a $VARIABLE", 7),
        ("$A !~ null", "the right side of !~ must be a /regex/ or a $VARIABLE", 7),
        ("$A == /a/", "unexpected regex /a/ at column 7: use =~ or !~", 7),
        ("/a/ =~ $A", "unexpected regex /a/ at column 1: a regex can only be the right side", 1),
        ("/a/", "a regex can only be the right side", 1),
        ("main", "unexpected word 'main' at column 1: quote strings", 1),
        ("$A == main", "unexpected word 'main' at column 7", 7),
        ("$A == true", "unexpected word 'true' at column 7", 7),
        ("$ A", "unexpected '$' at column 1", 1),
        ("${A", "unexpected '$' at column 1", 1),
        ("$A == ${}", "unexpected '$' at column 7", 7),
        ("$A == @", "unexpected '@' at column 7", 7),
        ("!$A", "unexpected '!' at column 1", 1),
    ],
)
def test_parse_errors(expr: str, message: str, column: int) -> None:
    with pytest.raises(ExpressionError) as info:
        parse(expr)
    assert message in str(info.value)
    assert getattr(info.value, "column", None) == column
    assert isinstance(info.value, AicdError)


def test_parse_tree_shape_and_cache() -> None:
    tree = parse("$A || $B && $C == 'x'")
    assert isinstance(tree, Or)
    assert tree.left == Var("A", 1)
    assert isinstance(tree.right, And)
    assert isinstance(tree.right.right, Compare)
    assert tree.right.right.op == "=="
    assert parse("$A || $B && $C == 'x'") is tree  # cached


def test_regex_in_variable_that_is_invalid_names_the_variable() -> None:
    with pytest.raises(ExpressionError, match=r"value of \$BADRE is not a valid regex: bad regex /\[/"):
        evaluate("$A =~ $BADRE", VARS)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(ExpressionError, match="expected an expression string"):
        parse(True)


def test_evaluate_is_fast_enough_for_many_jobs() -> None:
    import time

    expr = '($CI_COMMIT_BRANCH == "main" || $CI_COMMIT_TAG =~ /^v\\d+/) && $CI_PIPELINE_SOURCE != "schedule"'
    variables = {"CI_COMMIT_BRANCH": "main", "CI_PIPELINE_SOURCE": "push"}
    start = time.perf_counter()
    for _ in range(10_000):
        assert evaluate(expr, variables)
    assert time.perf_counter() - start < 1.0
