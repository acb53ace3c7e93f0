"""`parallel: N` and `parallel: matrix`: one YAML job -> its instances, named as GitLab names them.

- `parallel: N` (1..200): "name 1/N" .. "name N/N", CI_NODE_INDEX/CI_NODE_TOTAL set.
- `parallel: matrix: [{A: [x, y], B: z}, ...]`: one instance per combination
  of each entry (the cartesian product, keys in their order, entries in
  theirs), named "name: [x, z]"; the matrix variables are added to the
  instance; at most 200 in all.
- `needs: [{job, parallel: {matrix: [...]}}]` selects the instances whose
  matrix values match one entry of the selector; `$[[ matrix.NAME ]]` in a
  selector value is the needing instance's own value of NAME.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aicd.pipeline.schema import At, Problems, check_keys, kind, read_map, scalar_text

MAX_PARALLEL = 200
_MATRIX_EXPR = re.compile(r"\$\[\[\s*matrix\.([A-Za-z0-9_-]+)\s*\]\]")

Combination = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ParallelSpec:
    """A job's `parallel`, checked: a count or matrix combinations."""

    count: int | None = None  # parallel: N
    matrix: tuple[Combination, ...] = ()  # parallel: matrix, expanded


@dataclass(frozen=True)
class Instance:
    """One job made by `parallel`: its name, index and matrix values."""

    name: str
    node_index: int | None = None
    node_total: int | None = None
    matrix: Combination = ()


def read_parallel(value: Any, at: At, problems: Problems) -> ParallelSpec | None:
    """Check `parallel:` and expand its matrix; None when absent or wrong (problem recorded)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_PARALLEL:
            problems.error(at, f"must be a whole number from 1 to {MAX_PARALLEL}, got {value}")
            return None
        return ParallelSpec(count=value)
    if not isinstance(value, dict):
        problems.error(
            at, f"must be a number from 1 to {MAX_PARALLEL} or a mapping with matrix, got {kind(value)}"
        )
        return None
    mapping = read_map(value, at, problems)
    if mapping is None:
        return None
    check_keys(mapping, ("matrix",), at, problems, "parallel")
    if "matrix" not in mapping:
        problems.error(at, "needs matrix: a list of mappings of variable values")
        return None
    combos = read_matrix(mapping["matrix"], at.of(mapping, "matrix"), problems, expressions=False)
    if combos is None:
        return None
    if len(combos) > MAX_PARALLEL:
        problems.error(
            at.of(mapping, "matrix"), f"makes {len(combos)} jobs; GitLab allows at most {MAX_PARALLEL}"
        )
        return None
    if not combos:
        problems.error(at.of(mapping, "matrix"), "must not be empty")
        return None
    return ParallelSpec(matrix=tuple(combos))


def read_matrix(value: Any, at: At, problems: Problems, *, expressions: bool) -> list[Combination] | None:
    """A matrix (list of {NAME: value | [values]}) as its combinations, in GitLab's order."""
    if not isinstance(value, list):
        problems.error(at, f"must be a list of mappings (variable: values), got {kind(value)}")
        return None
    combos: list[Combination] = []
    ok = True
    for i, entry in enumerate(value):
        where = at.of(value, i)
        mapping = read_map(entry, where, problems)
        if mapping is None:
            ok = False
            continue
        if not mapping:
            problems.error(where, "must name at least one variable")
            ok = False
            continue
        axes: list[list[tuple[str, str]]] = []
        for key, raw in mapping.items():
            key_at = where.of(mapping, key)
            values = _axis_values(raw, key_at, problems)
            if values is None:
                ok = False
                break
            if not expressions:
                for text in values:
                    if _MATRIX_EXPR.search(text):
                        problems.error(
                            key_at, "cannot use $[[ matrix.* ]] here (only in needs:parallel:matrix)"
                        )
                        ok = False
            axes.append([(str(key), v) for v in values])
        else:
            size = 1
            for axis in axes:
                size *= len(axis)
            if size + len(combos) > MAX_PARALLEL * 5:  # far past any limit: do not build it
                problems.error(where, f"makes {size} combinations; GitLab allows at most {MAX_PARALLEL}")
                return None
            combos.extend(tuple(c) for c in itertools.product(*axes))
    return combos if ok else None


def _axis_values(raw: Any, at: At, problems: Problems) -> list[str] | None:
    if isinstance(raw, list):
        if not raw:
            problems.error(at, "must list at least one value")
            return None
        out: list[str] = []
        for i, item in enumerate(raw):
            text = scalar_text(item) if item is not None else None
            if text is None:
                problems.error(at.of(raw, i), f"must be a string or a number, got {kind(item)}")
                return None
            out.append(text)
        return out
    text = scalar_text(raw) if raw is not None else None
    if text is None:
        problems.error(at, f"must be a value or a list of values, got {kind(raw)}")
        return None
    return [text]


def instances(name: str, spec: ParallelSpec | None) -> list[Instance]:
    """The jobs one YAML job becomes."""
    if spec is None:
        return [Instance(name)]
    if spec.count is not None:
        total = spec.count
        return [Instance(f"{name} {i}/{total}", i, total) for i in range(1, total + 1)]
    total = len(spec.matrix)
    return [
        Instance(matrix_name(name, combo), i, total, combo) for i, combo in enumerate(spec.matrix, start=1)
    ]


def matrix_name(name: str, combo: Combination) -> str:
    return f"{name}: [{', '.join(value for _, value in combo)}]"


def substitute(text: str, own: Mapping[str, str]) -> tuple[str, list[str]]:
    """`$[[ matrix.NAME ]]` replaced with `own[NAME]`; also the names `own` lacks."""
    missing: list[str] = []

    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in own:
            missing.append(key)
            return match.group(0)
        return own[key]

    return _MATRIX_EXPR.sub(sub, text), missing


def has_expression(text: str) -> bool:
    return _MATRIX_EXPR.search(text) is not None


def select(candidates: Sequence[Instance], selector: Sequence[Combination]) -> list[Instance]:
    """The instances matching any entry of `selector` (every key of the entry equal)."""
    wanted: list[dict[str, set[str]]] = []
    for combo in selector:
        entry: dict[str, set[str]] = {}
        for key, value in combo:
            entry.setdefault(key, set()).add(value)
        wanted.append(entry)
    out: list[Instance] = []
    for inst in candidates:
        values = dict(inst.matrix)
        if any(all(values.get(k) in vs for k, vs in entry.items()) for entry in wanted):
            out.append(inst)
    return out
