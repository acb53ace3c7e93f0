"""Variable expansion, nested resolution and masking (GitLab semantics)."""

from __future__ import annotations

import pytest

from aicd.pipeline.ir import Variable
from aicd.pipeline.variables import MASK, expand, masker, references, resolve

LOOKUP = {"A": "alpha", "B": "beta", "EMPTY": "", "_U": "under", "X1": "x-one", "DOLLAR": "$A"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("plain text", "plain text"),
        ("$A", "alpha"),
        ("${A}", "alpha"),
        ("$A$B", "alphabeta"),
        ("${A}${B}", "alphabeta"),
        ("x$A-y", "xalpha-y"),
        ("${A}_suffix", "alpha_suffix"),
        ("$A_suffix", ""),  # the name is A_suffix, unknown
        ("$UNKNOWN", ""),
        ("${UNKNOWN}", ""),
        ("[$EMPTY]", "[]"),
        ("$_U", "under"),
        ("$X1", "x-one"),
        ("$$", "$"),
        ("$$A", "$A"),
        ("$$$A", "$alpha"),
        ("$$$$A", "$$A"),
        ("ls $$TMP_DIR", "ls $TMP_DIR"),
        ("cost: 5$", "cost: 5$"),
        ("$ alone", "$ alone"),
        ("$1 positional", "$1 positional"),
        ("${A", "${A"),
        ("${}", "${}"),
        ("${1A}", "${1A}"),
        ("$DOLLAR", "$A"),  # values are not re-expanded
        ("${URL_${A}}", "${URL_alpha}"),  # no nested syntax in GitLab
        ("a\n$B\n", "a\nbeta\n"),
        ("héllo $A ✓", "héllo alpha ✓"),
    ],
)
def test_expand(text: str, expected: str) -> None:
    assert expand(text, LOOKUP) == expected


def test_references_skips_escaped_dollars() -> None:
    assert references("$A ${B} $$C $D_1 $") == ["A", "B", "D_1"]


def V(key: str, value: str, expand: bool = True) -> Variable:
    return Variable(key=key, value=value, expand=expand)


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ([], {}),
        ([V("A", "1")], {"A": "1"}),
        ([V("A", "1"), V("A", "2")], {"A": "2"}),  # later wins
        ([V("A", "1"), V("B", "$A")], {"A": "1", "B": "1"}),
        ([V("B", "$A"), V("A", "1")], {"A": "1", "B": "1"}),  # order does not matter
        ([V("A", "1"), V("B", "$A"), V("A", "2")], {"A": "2", "B": "2"}),  # winning definition used
        ([V("A", "a"), V("B", "<$A>"), V("C", "[${B}]")], {"A": "a", "B": "<a>", "C": "[<a>]"}),  # nested
        ([V("C", "$B$B"), V("B", "$A"), V("A", "x")], {"A": "x", "B": "x", "C": "xx"}),
        ([V("A", "1"), V("B", "$A", expand=False)], {"A": "1", "B": "$A"}),  # raw
        ([V("A", "$X", expand=False), V("B", "$A")], {"A": "$X", "B": "$X"}),  # raw value not re-expanded
        ([V("B", "$MISSING/x")], {"B": "/x"}),
        ([V("B", "$$A"), V("A", "1")], {"A": "1", "B": "$A"}),
        ([V("B", "$$A", expand=False)], {"B": "$$A"}),
        ([V("A", "$A")], {"A": "$A"}),  # self reference stays literal
        ([V("A", "x$A")], {"A": "x$A"}),
        ([V("A", "$B"), V("B", "$A")], {"A": "$A", "B": "$B"}),  # cycle: no loop
        ([V("A", "1$B"), V("B", "2$C"), V("C", "3$A")], {"A": "123$A", "B": "231$B", "C": "312$C"}),
        ([V("C", "3$A"), V("B", "2$C"), V("A", "1$B")], {"A": "123$A", "B": "231$B", "C": "312$C"}),
        ([V("X", "<$A>"), V("A", "1$B"), V("B", "2$A")], {"X": "<12$A>", "A": "12$A", "B": "21$B"}),
        ([V("A", "$A$B"), V("B", "b")], {"A": "$Ab", "B": "b"}),
        (
            [V("FLAGS", "-al"), V("LS_CMD", 'ls "$FLAGS" $$TMP_DIR')],
            {"FLAGS": "-al", "LS_CMD": 'ls "-al" $TMP_DIR'},
        ),
    ],
)
def test_resolve(variables: list[Variable], expected: dict[str, str]) -> None:
    assert resolve(variables) == expected


def test_resolve_keeps_every_key_once() -> None:
    out = resolve([V("A", "1"), V("B", "2"), V("A", "3")])
    assert list(out) == ["B", "A"]


def test_resolve_fallback_for_unknown_and_self_references() -> None:
    env = {"PATH": "/usr/bin", "HOME": "/home/u"}
    out = resolve([V("PATH", "/opt/bin:$PATH"), V("CACHE", "$HOME/.cache"), V("Z", "$NOPE")], fallback=env)
    assert out == {"PATH": "/opt/bin:/usr/bin", "CACHE": "/home/u/.cache", "Z": ""}
    assert "HOME" not in out  # only the keys of `variables`


def test_resolve_deep_chain() -> None:
    # Defined last-first, so resolving V199 walks the whole chain.
    chain = [V(f"V{i}", f"${{V{i - 1}}}") for i in range(199, 0, -1)] + [V("V0", "end")]
    assert resolve(chain)["V199"] == "end"


def test_resolve_diamonds_are_not_exponential() -> None:
    # Each level refers to the one below twice: 2**40 expansions without memoisation.
    layers = [V("L0", "")] + [V(f"L{i}", f"$L{i - 1}${{L{i - 1}}}") for i in range(1, 41)]
    out = resolve(list(reversed(layers)))
    assert set(out.values()) == {""}
    assert len(out) == 41


@pytest.mark.parametrize(
    ("secrets", "text", "expected"),
    [
        ([], "nothing to hide", "nothing to hide"),
        (["", ""], "empty secrets are ignored", "empty secrets are ignored"),
        (["s3cr3t"], "token=s3cr3t;", f"token={MASK};"),
        (["s3cr3t"], "s3cr3ts3cr3t", MASK),  # adjacent occurrences: one mask, nothing shows
        (["abc", "abcdef"], "x abcdef y abc", f"x {MASK} y {MASK}"),  # longest first
        (["abc", "bcdef"], "abcdef", MASK),  # overlap: no part left showing
        (["aa"], "aaa", MASK),
        (["a.b"], "axb a.b", f"axb {MASK}"),  # not a regex
        (["p@ss", "tok"], "p@ss and tok", f"{MASK} and {MASK}"),
        (["secret"], "no match here", "no match here"),
    ],
)
def test_masker(secrets: list[str], text: str, expected: str) -> None:
    assert masker(secrets)(text) == expected


def test_masker_never_leaves_a_secret_in_output() -> None:
    secrets = ["hunter2", "nter2xx", "2x"]
    mask = masker(secrets)
    for text in ["hunter2xx", "xxhunter2", "hunter2x hunter2", "2x2x", "nter2xxhunter2"]:
        out = mask(text)
        assert not any(s in out for s in secrets), (text, out)
