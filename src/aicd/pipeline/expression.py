"""The `rules:if` / `only:variables` expression language of GitLab CI.

Grammar (GitLab's documented syntax)::

    expr       := and_expr ( '||' and_expr )*
    and_expr   := primary ( '&&' primary )*          # && binds tighter than ||
    primary    := '(' expr ')' | operand ( op operand )?
    op         := '==' | '!=' | '=~' | '!~'
    operand    := $NAME | ${NAME} | "string" | 'string' | null | /regex/flags

Meaning:

- `$VAR` alone is true when the variable is defined and not empty; a string
  alone is true when not empty; `null` alone is false.
- `==` / `!=` compare values; an undefined variable is `null`, which equals
  only `null` (so `$UNDEFINED == ""` is false, `$EMPTY == null` is false).
- `=~` / `!~` match the left value (undefined -> "") against a regex, with
  *search* semantics (unanchored), as GitLab does. The right side is a
  `/regex/` literal or a variable: a value written `/.../flags` is compiled as
  a regex, any other value is matched as a literal substring; an undefined
  variable makes `=~` false and `!~` true.
- Variables inside strings and regexes are not expanded.
- `${NAME}` is accepted as well as `$NAME` (GitLab documents only `$NAME`;
  gitlab-ci-local accepts both, and real pipelines use both).
- Regex flags: `i` (ignore case), `m` (`^`/`$` match at line ends), `s` (`.`
  matches a newline).

Divergence: GitLab compiles regexes with RE2; aicd uses Python's `re`. The
common syntax is the same. A variable on the right of `=~` whose value is not
written `/.../` is matched as a literal substring (GitLab's result there is
accidental: it looks for the left text inside the value). `\\z` and `(?<name>...)` are translated to Python's
`\\Z` and `(?P<name>...)`; RE2-only syntax (`\\pL`-style classes, the `U`
flag) is reported as an error, and Python-only syntax (lookarounds,
backreferences) is accepted although GitLab would refuse it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from aicd.errors import ExpressionError


class ExpressionSyntaxError(ExpressionError):
    """An expression that cannot be parsed; `column` is 1-based within it."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.column = column


# --- syntax tree -------------------------------------------------------------


@dataclass(frozen=True)
class Var:
    name: str
    column: int = 0


@dataclass(frozen=True)
class Str:
    value: str
    column: int = 0


@dataclass(frozen=True)
class Null:
    column: int = 0


@dataclass(frozen=True)
class Regex:
    source: str
    flags: str
    pattern: re.Pattern[str]
    column: int = 0


@dataclass(frozen=True)
class Compare:
    op: str  # '==', '!=', '=~', '!~'
    left: Operand
    right: Operand


@dataclass(frozen=True)
class And:
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Or:
    left: Expr
    right: Expr


Operand = Var | Str | Null | Regex
Expr = Var | Str | Null | Compare | And | Or

# --- lexer ---------------------------------------------------------------------

_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))", re.ASCII)
_WORD = re.compile(r"[A-Za-z0-9_.\-]+")
_SPACE = re.compile(r"\s+")
_OPS = ("==", "!=", "=~", "!~", "&&", "||")
_HINTS = {
    "=": ": did you mean '=='?",
    "!": ": did you mean '!=' or '!~'? (there is no negation operator)",
    "&": ": did you mean '&&'?",
    "|": ": did you mean '||'?",
}
_VALUE_HINT = 'a value ($VARIABLE, "string", /regex/ or null)'


@dataclass(frozen=True)
class _Token:
    kind: str  # 'var' 'str' 'null' 'regex' 'op' '(' ')' 'end'
    text: str  # as written
    column: int
    node: Operand | None = None


def _tokenize(expr: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    n = len(expr)
    while pos < n:
        space = _SPACE.match(expr, pos)
        if space:
            pos = space.end()
            continue
        col = pos + 1
        ch = expr[pos]
        if ch == "$":
            m = _VAR.match(expr, pos)
            if not m:
                raise ExpressionSyntaxError(
                    f"unexpected '$' at column {col}: a variable is written $NAME or ${{NAME}}", col
                )
            name = m.group(1) or m.group(2)
            tokens.append(_Token("var", m.group(0), col, node=Var(name, col)))
            pos = m.end()
        elif ch in "\"'":
            end = expr.find(ch, pos + 1)
            if end < 0:
                raise ExpressionSyntaxError(
                    f"unterminated string starting at column {col}: add the closing {ch}", col
                )
            value = expr[pos + 1 : end]
            tokens.append(_Token("str", expr[pos : end + 1], col, node=Str(value, col)))
            pos = end + 1
        elif ch == "/":
            pos = _lex_regex(expr, pos, tokens)
        elif ch in "()":
            tokens.append(_Token(ch, ch, col))
            pos += 1
        elif expr.startswith(_OPS, pos):
            tokens.append(_Token("op", expr[pos : pos + 2], col))
            pos += 2
        else:
            word = _WORD.match(expr, pos)
            if word and word.group(0) == "null":
                tokens.append(_Token("null", "null", col, node=Null(col)))
                pos = word.end()
            elif word:
                raise ExpressionSyntaxError(
                    f"unexpected word '{word.group(0)}' at column {col}: "
                    'quote strings ("...") and write variables as $NAME',
                    col,
                )
            else:
                hint = _HINTS.get(ch, "")
                raise ExpressionSyntaxError(f"unexpected '{ch}' at column {col}{hint}", col)
    tokens.append(_Token("end", "", n + 1))
    return tokens


def _lex_regex(expr: str, pos: int, tokens: list[_Token]) -> int:
    col = pos + 1
    i = pos + 1
    n = len(expr)
    while i < n and expr[i] != "/":
        i += 2 if expr[i] == "\\" else 1
    if i >= n:
        raise ExpressionSyntaxError(f"unterminated regex starting at column {col}: add the closing /", col)
    source = expr[pos + 1 : i]
    j = i + 1
    while j < n and expr[j].isalpha():
        j += 1
    flags = expr[i + 1 : j]
    written = expr[pos:j]
    pattern = compile_regex(source, flags, where=f" at column {col}", column=col)
    tokens.append(_Token("regex", written, col, node=Regex(source, flags, pattern, col)))
    return j


# --- regexes -------------------------------------------------------------------

_FLAG_BITS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}
_REGEX_LITERAL = re.compile(r"\A/(.*)/([A-Za-z]*)\Z", re.DOTALL)


def _translate(source: str) -> str:
    """RE2 spellings Python's `re` lacks: `\\z` -> `\\Z`, `(?<name>` -> `(?P<name>`."""
    if "\\z" not in source and "(?<" not in source:
        return source
    out: list[str] = []
    i = 0
    n = len(source)
    while i < n:
        ch = source[i]
        if ch == "\\" and i + 1 < n:
            nxt = source[i + 1]
            out.append("\\Z" if nxt == "z" else source[i : i + 2])
            i += 2
        elif source.startswith("(?<", i) and i + 3 < n and source[i + 3] not in "=!":
            out.append("(?P<")
            i += 3
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def compile_regex(source: str, flags: str, *, where: str = "", column: int = 0) -> re.Pattern[str]:
    """Compile a GitLab `/source/flags` regex; ExpressionError says what is wrong."""
    return _compile_cached(source, flags, where, column)


@functools.lru_cache(maxsize=1024)
def _compile_cached(source: str, flags: str, where: str, column: int) -> re.Pattern[str]:
    bits = 0
    for flag in flags:
        if flag == "U":
            raise ExpressionSyntaxError(
                f"bad regex /{source}/{flags}{where}: flag 'U' (ungreedy) is not supported; "
                "use lazy quantifiers such as .*? instead",
                column,
            )
        if flag not in _FLAG_BITS:
            raise ExpressionSyntaxError(
                f"bad regex /{source}/{flags}{where}: unknown flag '{flag}' (use i, m or s)", column
            )
        bits |= _FLAG_BITS[flag]
    try:
        return re.compile(_translate(source), bits)
    except re.error as exc:
        raise ExpressionSyntaxError(f"bad regex /{source}/{flags}{where}: {exc.msg}", column) from None


def regex_from_value(value: str) -> re.Pattern[str] | None:
    """A variable's value as a regex if it is written `/.../flags`, else None."""
    m = _REGEX_LITERAL.match(value)
    if not m:
        return None
    return compile_regex(m.group(1), m.group(2))


# --- parser --------------------------------------------------------------------


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def parse(self) -> Expr:
        node = self.or_expr()
        tok = self.peek()
        if tok.kind != "end":
            raise self.unexpected(tok, "expected &&, || or the end")
        return node

    def or_expr(self) -> Expr:
        node = self.and_expr()
        while self.peek().text == "||":
            self.take()
            node = Or(node, self.and_expr())
        return node

    def and_expr(self) -> Expr:
        node = self.primary()
        while self.peek().text == "&&":
            self.take()
            node = And(node, self.primary())
        return node

    def primary(self) -> Expr:
        tok = self.peek()
        if tok.kind == "(":
            self.take()
            node = self.or_expr()
            close = self.peek()
            if close.kind != ")":
                if close.kind == "end":
                    raise ExpressionSyntaxError(
                        f"missing ')' to close the '(' at column {tok.column}", close.column
                    )
                raise self.unexpected(close, f"expected ')' to close the '(' at column {tok.column}")
            self.take()
            return node
        left = self.operand()
        op = self.peek()
        if op.kind != "op" or op.text in ("&&", "||"):
            if isinstance(left, Regex):
                raise ExpressionSyntaxError(
                    f"unexpected regex {tok.text} at column {tok.column}: "
                    "a regex can only be the right side of =~ or !~",
                    tok.column,
                )
            if op.kind in ("var", "str", "null", "regex"):
                raise self.unexpected(op, "expected an operator (==, !=, =~, !~, &&, ||)")
            return left
        self.take()
        if isinstance(left, Regex):
            raise ExpressionSyntaxError(
                f"unexpected regex {tok.text} at column {tok.column}: "
                "a regex can only be the right side of =~ or !~",
                tok.column,
            )
        right_tok = self.peek()
        right = self.operand()
        if op.text in ("=~", "!~"):
            if isinstance(right, (Str, Null)):
                raise ExpressionSyntaxError(
                    f"unexpected {right_tok.text} at column {right_tok.column}: "
                    f"the right side of {op.text} must be a /regex/ or a $VARIABLE",
                    right_tok.column,
                )
        elif isinstance(right, Regex):
            raise ExpressionSyntaxError(
                f"unexpected regex {right_tok.text} at column {right_tok.column}: "
                f"use =~ or !~ to match a regex, not {op.text}",
                right_tok.column,
            )
        nxt = self.peek()
        if nxt.kind == "op" and nxt.text not in ("&&", "||"):
            raise self.unexpected(nxt, "comparisons cannot be chained; use && or ||")
        return Compare(op.text, left, right)

    def operand(self) -> Operand:
        tok = self.take()
        if tok.node is not None:
            return tok.node
        if tok.kind == "end":
            raise ExpressionSyntaxError(
                f"unexpected end of expression at column {tok.column}: expected {_VALUE_HINT}", tok.column
            )
        raise self.unexpected(tok, f"expected {_VALUE_HINT}")

    @staticmethod
    def unexpected(tok: _Token, hint: str) -> ExpressionSyntaxError:
        if tok.kind == "end":
            return ExpressionSyntaxError(f"unexpected end of expression at column {tok.column}", tok.column)
        return ExpressionSyntaxError(f"unexpected '{tok.text}' at column {tok.column}: {hint}", tok.column)


@functools.lru_cache(maxsize=4096)
def parse(expr: str) -> Expr:
    """Parse an expression (cached). Raises ExpressionError (an ExpressionSyntaxError)."""
    if not isinstance(expr, str):
        raise ExpressionSyntaxError(f"expected an expression string, got {type(expr).__name__}", 0)
    if not expr.strip():
        raise ExpressionSyntaxError("empty expression: write a condition such as $CI_COMMIT_BRANCH", 1)
    return _Parser(_tokenize(expr)).parse()


# --- evaluation ----------------------------------------------------------------


def evaluate(expr: str, variables: Mapping[str, str]) -> bool:
    """Parse (cached) and evaluate `expr` with `variables`."""
    return evaluate_tree(parse(expr), variables)


def evaluate_tree(node: Expr, variables: Mapping[str, str]) -> bool:
    if isinstance(node, Or):
        return evaluate_tree(node.left, variables) or evaluate_tree(node.right, variables)
    if isinstance(node, And):
        return evaluate_tree(node.left, variables) and evaluate_tree(node.right, variables)
    if isinstance(node, Compare):
        return _compare(node, variables)
    value = _value(node, variables)
    return bool(value)


def _value(node: Operand, variables: Mapping[str, str]) -> str | None:
    if isinstance(node, Var):
        return variables.get(node.name)
    if isinstance(node, Str):
        return node.value
    if isinstance(node, Regex):
        return f"/{node.source}/{node.flags}"
    return None


def _compare(node: Compare, variables: Mapping[str, str]) -> bool:
    left = _value(node.left, variables)
    if node.op == "==":
        return left == _value(node.right, variables)
    if node.op == "!=":
        return left != _value(node.right, variables)
    negate = node.op == "!~"
    right = node.right
    text = left or ""
    if isinstance(right, Regex):
        found = right.pattern.search(text) is not None
    else:
        held = _value(right, variables)
        if held is None:
            return negate
        try:
            pattern = regex_from_value(held)
        except ExpressionError as exc:
            name = right.name if isinstance(right, Var) else "?"
            raise ExpressionError(f"the value of ${name} is not a valid regex: {exc}") from None
        found = pattern.search(text) is not None if pattern is not None else held in text
    return found != negate
