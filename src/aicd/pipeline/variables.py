"""CI/CD variable semantics: `$VAR` expansion, nested resolution, masking.

GitLab's rules, as this module applies them:

- `$NAME` and `${NAME}` (NAME is `[A-Za-z_][A-Za-z0-9_]*`) are references;
  `$$` is an escaped, literal `$`; any other `$` is kept as it is.
- A reference to an unknown variable expands to the empty string.
- A variable's value may refer to other variables; they are expanded
  recursively (nested), using the winning (last) definition of each key.
  A variable with `expand: false` is raw: its `$` are literal.
- A self or cyclic reference is left literal (`$A` stays `$A`), unless the
  fallback lookup (say the process environment) knows the name: then
  `PATH: "/opt/bin:$PATH"` extends the inherited `PATH`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from aicd.pipeline.ir import Variable

MASK = "[MASKED]"

# `$$`, `${NAME}` or `$NAME`, in one pass.
_REF = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def expand(text: str, lookup: Mapping[str, str]) -> str:
    """Expand `$VAR`, `${VAR}` and `$$` in `text` with `lookup` (unknown -> "")."""
    if "$" not in text:
        return text

    def sub(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        return lookup.get(match.group(2) or match.group(3), "")

    return _REF.sub(sub, text)


def references(text: str) -> list[str]:
    """The variable names `text` refers to, in order (escaped `$$` excluded)."""
    return [m.group(2) or m.group(3) for m in _REF.finditer(text) if not m.group(1)]


def resolve(variables: Sequence[Variable], *, fallback: Mapping[str, str] | None = None) -> dict[str, str]:
    """The final value of every key in `variables` (later definitions win).

    Values of `expand=True` variables have their references expanded
    recursively; `expand=False` values are kept raw. References to names not
    defined in `variables` are looked up in `fallback` (when given), else
    expand to "". In a cycle each variable expands once around it and keeps
    the reference back to itself literal (`A: 1$B`, `B: 2$A` give A = `12$A`,
    B = `21$B`), whatever the order. The result holds only the keys of
    `variables`.
    """
    winners: dict[str, Variable] = {}
    for var in variables:
        winners.pop(var.key, None)  # keep the order of the last definition
        winners[var.key] = var
    extra: Mapping[str, str] = fallback if fallback is not None else {}
    # Only the values that refer to another defined variable (most refer to none: a job's
    # ~60 predefined variables are raw) take part in the recursion below.
    graph: dict[str, list[str]] = {}
    for key, var in winners.items():
        if var.expand and "$" in var.value:
            refs = [r for r in references(var.value) if r in winners]
            if refs:
                graph[key] = refs
    if not graph:  # nothing nested, no cycle: each value on its own
        return {key: expand(var.value, extra) if var.expand else var.value for key, var in winners.items()}
    component = _components(graph)
    memo: dict[str, str] = {}
    active: set[str] = set()
    active_per_component: dict[int, int] = {}

    def value_of(key: str) -> str:
        # A value depends on the path only through members of its own cycle.
        # (one that refers to no other is in no cycle; one that none refers to has no component)
        comp = component.get(key)
        cacheable = comp is None or not active_per_component.get(comp)
        if cacheable and key in memo:
            return memo[key]
        var = winners[key]
        if not var.expand:
            result = var.value
        elif key not in graph:
            result = expand(var.value, extra)
        else:
            comp = component[key]
            active.add(key)
            active_per_component[comp] = active_per_component.get(comp, 0) + 1
            try:
                result = _REF.sub(substitute, var.value)
            finally:
                active.discard(key)
                active_per_component[comp] -= 1
        if cacheable:
            memo[key] = result
        return result

    def substitute(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        name = match.group(2) or match.group(3)
        if name in winners:
            if name not in active:
                return value_of(name)
            return extra[name] if name in extra else match.group(0)  # self or cyclic reference
        return extra.get(name, "")

    return {key: value_of(key) for key in winners}


def _components(graph: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Strongly connected component id of every node with edges, and of every node they reach
    (Tarjan, iterative); a node that is not a key of ``graph`` has no edges."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    component: dict[str, int] = {}
    counter = 0
    components = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            edges = graph.get(node, ())
            if child < len(edges):
                work.append((node, child + 1))
                nxt = edges[child]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component[member] = components
                    if member == node:
                        break
                components += 1
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return component


def masker(secrets: Iterable[str]) -> Callable[[str], str]:
    """A function that replaces each non-empty secret in a text with `[MASKED]`.

    Every character covered by an occurrence of any secret is hidden:
    overlapping or adjacent occurrences (a secret inside a longer one, two
    secrets that share characters) become one `[MASKED]`, so no part of a
    secret is left showing.
    """
    unique = sorted({s for s in secrets if s}, key=lambda s: (-len(s), s))
    if not unique:
        return _identity
    any_secret = re.compile("|".join(re.escape(s) for s in unique))

    def mask(text: str) -> str:
        if any_secret.search(text) is None:
            return text
        spans: list[tuple[int, int]] = []
        for secret in unique:
            start = text.find(secret)
            while start >= 0:
                spans.append((start, start + len(secret)))
                start = text.find(secret, start + 1)
        spans.sort()
        out: list[str] = []
        pos = 0
        cur_start, cur_end = spans[0]
        for start, end in spans[1:]:
            if start <= cur_end:
                cur_end = max(cur_end, end)
                continue
            out += [text[pos:cur_start], MASK]
            pos = cur_end
            cur_start, cur_end = start, end
        out += [text[pos:cur_start], MASK, text[cur_end:]]
        return "".join(out)

    return mask


class PieceMasker:
    """Masks a line that arrives in pieces (a log line longer than the executor's cut): a secret
    split by a cut would escape a masker that sees each piece alone, so the end of each piece
    that may begin a secret is held back and shown with the next piece, masked whole."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=lambda s: (-len(s), s))
        self._mask = masker(self._secrets)
        self._keep = max((len(s) for s in self._secrets), default=1) - 1
        self._carry = ""

    def piece(self, text: str) -> str:
        """The masked text of this piece to show now (more of the same line follows)."""
        text = self._carry + text
        cut = len(text) - self._keep
        moved = True
        while moved and cut > 0:  # no secret may straddle the cut: move it before the secret
            moved = False
            for secret in self._secrets:
                start = text.find(secret, max(0, cut - len(secret) + 1))
                while 0 <= start < cut:
                    if start + len(secret) > cut:
                        cut, moved = start, True
                        break
                    start = text.find(secret, start + 1)
        cut = max(cut, 0)
        self._carry = text[cut:]
        return self._mask(text[:cut])

    def end(self, text: str) -> str:
        """The masked last piece of the line (with what was held back)."""
        text, self._carry = self._carry + text, ""
        return self._mask(text)

    @property
    def holding(self) -> bool:
        return bool(self._carry)


def _identity(text: str) -> str:
    return text
