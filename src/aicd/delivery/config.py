"""`aicd.yml`: the delivery configuration of a repository.

Top-level keys (all optional)::

    service: {...}        # the service to deploy (deployment work, later)
    model: {...}          # the registered model name and its files (registry, later)
    gates:                # model quality gates (used by `aicd gate`)
      - metric: accuracy
        min: 0.9
        max_regression_pct: 2     # at most 2 % worse than the baseline
        against: production       # baseline alias (needs the model registry)
      - metric: p95_latency_ms
        direction: lower          # higher (default) | lower is better
        max: 50
        max_regression: 5         # absolute
    environments: {...}   # deploy targets (deployment work, later)

`service`, `model` and `environments` are kept as read (mappings) for the
deployment work; only `gates` is interpreted now. Errors name file:line:col.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aicd.delivery.gate import Threshold
from aicd.errors import ConfigError
from aicd.suggest import did_you_mean

CONFIG_FILE = "aicd.yml"
# analysis: aicd.delivery.judge_config; sandbox: aicd.executors.sandbox (the jobs' network)
TOP_KEYS = ("service", "model", "gates", "environments", "analysis", "sandbox")
GATE_KEYS = ("metric", "min", "max", "direction", "max_regression", "max_regression_pct", "against")


@dataclass(frozen=True)
class DeliveryConfig:
    gates: list[Threshold] = field(default_factory=list)
    service: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    environments: dict[str, Any] = field(default_factory=dict)
    file: str = ""


def load_config(path: Path, display: str | None = None) -> DeliveryConfig:
    """Read and check `aicd.yml`; raises ConfigError (exit 2) naming file:line:col."""
    from aicd.errors import PipelineError
    from aicd.pipeline.loader import load_text

    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{name}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}: cannot read the config file: {exc}") from None
    if not text.strip():
        return DeliveryConfig(file=name)
    try:
        doc = load_text(text, name)
    except PipelineError as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{name}:1:1: {CONFIG_FILE} must be a mapping of {', '.join(TOP_KEYS)}")
    errors: list[str] = []
    for key in doc:
        if key not in TOP_KEYS:
            errors.append(
                f"{_at(doc, key)}: unknown key '{key}'{did_you_mean(key, TOP_KEYS)}; "
                f"known: {', '.join(TOP_KEYS)}"
            )
    sections: dict[str, dict[str, Any]] = {}
    for key in ("service", "model", "environments"):
        value = doc.get(key)
        if value is None:
            sections[key] = {}
        elif isinstance(value, dict):
            sections[key] = value  # a LocMap: aicd.deploy.spec names file:line:col from it
        else:
            errors.append(f"{_at(doc, key)}: '{key}' must be a mapping")
            sections[key] = {}
    gates = _gates(doc.get("gates"), _at(doc, "gates"), errors)
    _check_sandbox(doc.get("sandbox"), _at(doc, "sandbox"), errors)
    if errors:
        raise ConfigError("\n".join(errors))
    return DeliveryConfig(
        gates=gates,
        service=sections["service"],
        model=sections["model"],
        environments=sections["environments"],
        file=name,
    )


def _check_sandbox(raw: Any, where: str, errors: list[str]) -> None:
    """``sandbox: {network: none|on}``: read by the sandbox executor; checked here for typos."""
    if raw is None:
        return
    if not isinstance(raw, dict):
        errors.append(f"{where}: 'sandbox' must be a mapping, e.g. {{network: none}}")
        return
    for key in raw:
        if key != "network":
            errors.append(f"{_at(raw, key)}: sandbox: unknown key '{key}'{did_you_mean(key, ('network',))}")
    value = raw.get("network")
    # YAML 1.1 reads on/off as true/false: both are fine
    if value is not None and not isinstance(value, bool) and str(value).strip().lower() not in ("none", "on"):
        errors.append(f"{_at(raw, 'network')}: sandbox.network must be 'none' or 'on', not {value!r}")


def _at(node: Any, key: str | int) -> str:
    mark_of = getattr(node, "mark_of", None)
    return str(mark_of(key)) if mark_of is not None else "?"


def _gates(raw: Any, where: str, errors: list[str]) -> list[Threshold]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.append(f"{where}: 'gates' must be a list of {{metric: ..., min: ..., ...}}")
        return []
    out: list[Threshold] = []
    for i, item in enumerate(raw):
        at = _at(raw, i)
        if not isinstance(item, dict):
            errors.append(f"{at}: gates[{i}] must be a mapping with at least 'metric'")
            continue
        before = len(errors)
        for key in item:
            if key not in GATE_KEYS:
                errors.append(
                    f"{_at(item, key)}: gates[{i}]: unknown key '{key}'{did_you_mean(key, GATE_KEYS)}; "
                    f"known: {', '.join(GATE_KEYS)}"
                )
        metric = item.get("metric")
        if not isinstance(metric, str) or not metric:
            errors.append(f"{at}: gates[{i}]: 'metric' (the metric's name) is required")
        numbers: dict[str, float | None] = {}
        for key in ("min", "max", "max_regression", "max_regression_pct"):
            value = item.get(key)
            if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
                numbers[key] = None if value is None else float(value)
                if value is not None and not math.isfinite(value):
                    errors.append(
                        f"{_at(item, key)}: gates[{i}].{key} must be a finite number, not {value!r}: "
                        "a NaN or infinite threshold would pass or fail every model"
                    )
            else:
                errors.append(f"{_at(item, key)}: gates[{i}].{key} must be a number, not {value!r}")
        for key in ("max_regression", "max_regression_pct"):
            limit = numbers.get(key)
            if limit is not None and limit < 0:
                errors.append(f"{_at(item, key)}: gates[{i}].{key} must be 0 or more")
        direction = item.get("direction", "higher")
        if direction not in ("higher", "lower"):
            errors.append(
                f"{_at(item, 'direction')}: gates[{i}].direction must be 'higher' or 'lower' (is better)"
            )
        against = item.get("against")
        if against is not None and not isinstance(against, str):
            errors.append(f"{_at(item, 'against')}: gates[{i}].against must be a baseline alias name")
        if len(errors) > before:
            continue
        threshold = Threshold(
            metric=str(metric),
            min=numbers.get("min"),
            max=numbers.get("max"),
            higher_is_better=direction == "higher",
            max_regression=numbers.get("max_regression"),
            max_regression_pct=numbers.get("max_regression_pct"),
            against=against,
            against_at=_at(item, "against") if against is not None else "",
        )
        if threshold.empty:
            errors.append(
                f"{at}: gates[{i}] ({metric}) checks nothing: give min, max, max_regression "
                "or max_regression_pct"
            )
            continue
        out.append(threshold)
    return out
