"""The `analysis:` section of aicd.yml (or a judge.yml holding just that section).

::

    analysis:
      pass_threshold: 95          # score >= this: pass
      marginal_threshold: 75      # score >= this: marginal; below: fail
      groups: {latency: 60, errors: 40}   # group weights; unweighted groups share the rest of 100
      metrics:
        - name: latency_ms
          direction: increase     # which change is bad: increase | decrease | either (default)
          group: latency          # default: the metric's own name
          weight: 60              # shorthand for groups: {<group>: 60}
          critical: false         # true: failing it (no data too) fails the whole judgement
          must_have_data: false   # true: no data counts as a failure (NodataFailMetric)
          nan_strategy: remove    # remove | replace (NaN -> 0)
          outliers: keep          # keep | remove (IQR, outlier_factor 3)
          min_samples: 10         # fewer on a side: Nodata
          effect_size: {measure: mean_ratio, allowed_increase: 1.1, critical_increase: 1.5}
      drift: {psi_moderate: 0.1, psi_significant: 0.25, alpha: 0.02, bins: 10}
      thresholds:                 # Argo-style checks, for deployments (aicd.delivery.thresholds)
        - {name: success_rate, interval: 30s, count: 10, success_condition: "result >= 0.99"}

Errors name file:line:col and collect every problem at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aicd.delivery.drift import DriftThresholds
from aicd.delivery.judge import (
    DIRECTIONS,
    EITHER,
    MARGINAL_THRESHOLD,
    MEASURES,
    MIN_SAMPLES,
    NAN_REMOVE,
    NAN_REPLACE,
    OUTLIERS_KEEP,
    OUTLIERS_REMOVE,
    PASS_THRESHOLD,
    EffectSize,
    JudgeConfig,
    MetricConfig,
    neutral_effect,
)
from aicd.delivery.thresholds import ThresholdSpec, threshold_spec
from aicd.errors import ConfigError
from aicd.suggest import did_you_mean

SECTION = "analysis"
ANALYSIS_KEYS = ("pass_threshold", "marginal_threshold", "groups", "metrics", "drift", "thresholds")
METRIC_KEYS = (
    "name",
    "direction",
    "group",
    "weight",
    "critical",
    "must_have_data",
    "nan_strategy",
    "outliers",
    "outlier_factor",
    "min_samples",
    "effect_size",
)
EFFECT_KEYS = ("measure", "allowed_increase", "allowed_decrease", "critical_increase", "critical_decrease")
DRIFT_KEYS = ("psi_moderate", "psi_significant", "alpha", "epsilon", "bins")

At = Callable[[str], str]


@dataclass(frozen=True)
class AnalysisConfig:
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    drift: DriftThresholds = field(default_factory=DriftThresholds)
    thresholds: tuple[ThresholdSpec, ...] = ()
    metric_weights: Mapping[str, float] = field(default_factory=dict)  # metric -> its `weight:`
    file: str = ""


def _mark(node: Any, key: str | int, fallback: str) -> str:
    mark_of = getattr(node, "mark_of", None)
    return str(mark_of(key)) if mark_of is not None else fallback


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _unknown(item: Mapping[str, Any], known: tuple[str, ...], where: str, at: At, errors: list[str]) -> None:
    for key in item:
        if key not in known:
            errors.append(
                f"{at(str(key))}: {where}: unknown key '{key}'{did_you_mean(str(key), known)}; "
                f"known: {', '.join(known)}"
            )


def _choice(
    item: Mapping[str, Any],
    key: str,
    choices: tuple[str, ...],
    default: str,
    where: str,
    at: At,
    errors: list[str],
) -> str:
    value = item.get(key, default)
    if value not in choices:
        errors.append(f"{at(key)}: {where}.{key} must be one of {', '.join(choices)} (is {value!r})")
        return default
    return str(value)


def _flag(item: Mapping[str, Any], key: str, where: str, at: At, errors: list[str]) -> bool:
    value = item.get(key, False)
    if not isinstance(value, bool):
        errors.append(f"{at(key)}: {where}.{key} must be true or false (is {value!r})")
        return False
    return value


def _positive(item: Mapping[str, Any], key: str, where: str, at: At, errors: list[str]) -> float | None:
    value = item.get(key)
    if value is None:
        return None
    if not _is_number(value) or value < 0:
        errors.append(f"{at(key)}: {where}.{key} must be a number, 0 or more (is {value!r})")
        return None
    return float(value)


def metric_config(
    item: Mapping[str, Any], where: str, at: At, errors: list[str]
) -> tuple[MetricConfig | None, float | None]:
    """(MetricConfig, its `weight:`) from a mapping; problems go to `errors`."""
    before = len(errors)
    _unknown(item, METRIC_KEYS, where, at, errors)
    name = item.get("name")
    if not isinstance(name, str) or not name:
        errors.append(f"{at('name')}: {where}: 'name' (the metric's name in the sample files) is required")
        return None, None
    direction = _choice(item, "direction", DIRECTIONS, EITHER, where, at, errors)
    group = item.get("group")
    if group is not None and (not isinstance(group, str) or not group):
        errors.append(f"{at('group')}: {where}.group must be a group name")
        group = None
    weight = _positive(item, "weight", where, at, errors)
    nan_strategy = _choice(item, "nan_strategy", (NAN_REMOVE, NAN_REPLACE), NAN_REMOVE, where, at, errors)
    outliers = _choice(item, "outliers", (OUTLIERS_KEEP, OUTLIERS_REMOVE), OUTLIERS_KEEP, where, at, errors)
    factor = _positive(item, "outlier_factor", where, at, errors)
    min_samples = item.get("min_samples", MIN_SAMPLES)
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
        errors.append(f"{at('min_samples')}: {where}.min_samples must be a whole number, 1 or more")
        min_samples = MIN_SAMPLES
    effect = _effect(item.get("effect_size"), f"{where}.effect_size", item, errors)
    config = MetricConfig(
        name=name,
        direction=direction,
        group=group,
        critical=_flag(item, "critical", where, at, errors),
        must_have_data=_flag(item, "must_have_data", where, at, errors),
        nan_strategy=nan_strategy,
        outliers=outliers,
        outlier_factor=3.0 if factor is None else factor,
        min_samples=min_samples,
        effect=effect,
    )
    return (config if len(errors) == before else None), weight


def _effect(raw: Any, where: str, parent: Mapping[str, Any], errors: list[str]) -> EffectSize:
    if raw is None:
        return EffectSize()
    if not isinstance(raw, Mapping):
        at_key = _mark(parent, "effect_size", where)
        errors.append(f"{at_key}: {where} must be a mapping, e.g. {{allowed_increase: 1.1}}")
        return EffectSize()

    def at(key: str) -> str:
        return _mark(raw, key, where)

    _unknown(raw, EFFECT_KEYS, where, at, errors)
    measure = _choice(raw, "measure", MEASURES, MEASURES[0], where, at, errors)
    limits = {key: _positive(raw, key, where, at, errors) for key in EFFECT_KEYS[1:]}
    neutral = neutral_effect(measure)
    for key in ("allowed_increase", "critical_increase"):
        value = limits[key]
        if value is not None and value < neutral:
            errors.append(f"{at(key)}: {where}.{key} must be at least {neutral:g} (no change) for {measure}")
    for key in ("allowed_decrease", "critical_decrease"):
        value = limits[key]
        if value is not None and value > neutral:
            errors.append(f"{at(key)}: {where}.{key} must be at most {neutral:g} (no change) for {measure}")
    return EffectSize(measure, **limits)


def analysis_config(section: Mapping[str, Any], display: str) -> AnalysisConfig:
    """Check and read an `analysis:` mapping; raises one ConfigError listing every problem."""
    errors: list[str] = []

    def at(key: str) -> str:
        return _mark(section, key, display)

    _unknown(section, ANALYSIS_KEYS, SECTION, at, errors)
    thresholds: dict[str, float] = {}
    for key, default in (("pass_threshold", PASS_THRESHOLD), ("marginal_threshold", MARGINAL_THRESHOLD)):
        value = section.get(key, default)
        if not _is_number(value) or not 0 <= value <= 100:
            errors.append(f"{at(key)}: {SECTION}.{key} must be a score from 0 to 100 (is {value!r})")
            value = default
        thresholds[key] = float(value)
    if thresholds["marginal_threshold"] > thresholds["pass_threshold"]:
        errors.append(
            f"{at('marginal_threshold')}: {SECTION}.marginal_threshold must not exceed pass_threshold"
        )
    groups = _groups(section.get("groups"), at("groups"), errors)
    metrics, weights = _metrics(section.get("metrics"), at("metrics"), errors)
    drift = _drift(section.get("drift"), at("drift"), errors)
    specs = _thresholds(section.get("thresholds"), at("thresholds"), errors)
    if errors:
        raise ConfigError("\n".join(errors))
    judge = JudgeConfig(
        metrics=tuple(metrics),
        group_weights=groups,
        pass_threshold=thresholds["pass_threshold"],
        marginal_threshold=thresholds["marginal_threshold"],
    )
    return AnalysisConfig(
        judge=judge, drift=drift, thresholds=tuple(specs), metric_weights=weights, file=display
    )


def _groups(raw: Any, where: str, errors: list[str]) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        errors.append(f"{where}: {SECTION}.groups must map group names to weights, e.g. {{latency: 60}}")
        return {}
    out: dict[str, float] = {}
    for key, value in raw.items():
        if not _is_number(value) or value < 0:
            errors.append(f"{_mark(raw, key, where)}: {SECTION}.groups.{key} must be a weight, 0 or more")
            continue
        out[str(key)] = float(value)
    return out


def _metrics(raw: Any, where: str, errors: list[str]) -> tuple[list[MetricConfig], dict[str, float]]:
    if raw is None:
        return [], {}
    if not isinstance(raw, list):
        errors.append(f"{where}: {SECTION}.metrics must be a list of {{name: ..., direction: ...}}")
        return [], {}
    metrics: list[MetricConfig] = []
    weights: dict[str, float] = {}
    seen: set[str] = set()
    for i, item in enumerate(raw):
        label = f"{SECTION}.metrics[{i}]"
        item_at = _mark(raw, i, where)
        if not isinstance(item, Mapping):
            errors.append(f"{item_at}: {label} must be a mapping with at least 'name'")
            continue

        def at(key: str, item: Mapping[str, Any] = item, fallback: str = item_at) -> str:
            return _mark(item, key, fallback)

        name = item.get("name")
        if isinstance(name, str) and name in seen:
            errors.append(f"{item_at}: {label}: the metric '{name}' is configured twice")
            continue
        seen.add(str(name))
        metric, weight = metric_config(item, label, at, errors)
        if metric is None:
            continue
        metrics.append(metric)
        if weight is not None:
            weights[metric.name] = weight
    return metrics, weights


def _drift(raw: Any, where: str, errors: list[str]) -> DriftThresholds:
    if raw is None:
        return DriftThresholds()
    if not isinstance(raw, Mapping):
        errors.append(f"{where}: {SECTION}.drift must be a mapping, e.g. {{psi_significant: 0.25}}")
        return DriftThresholds()

    def at(key: str) -> str:
        return _mark(raw, key, where)

    _unknown(raw, DRIFT_KEYS, f"{SECTION}.drift", at, errors)
    values: dict[str, Any] = {}
    for key in DRIFT_KEYS:
        if key not in raw:
            continue
        value = raw[key]
        if key == "bins":
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                errors.append(f"{at(key)}: {SECTION}.drift.bins must be a whole number, 2 or more")
                continue
        elif not _is_number(value) or value <= 0 or (key in ("alpha", "epsilon") and value >= 1):
            errors.append(f"{at(key)}: {SECTION}.drift.{key} must be a positive number (is {value!r})")
            continue
        values[key] = value
    drift = replace(DriftThresholds(), **values)
    if drift.psi_moderate > drift.psi_significant:
        errors.append(f"{where}: {SECTION}.drift.psi_moderate must not exceed psi_significant")
    return drift


def _thresholds(raw: Any, where: str, errors: list[str]) -> list[ThresholdSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.append(
            f"{where}: {SECTION}.thresholds must be a list of {{name: ..., success_condition: ...}}"
        )
        return []
    out: list[ThresholdSpec] = []
    for i, item in enumerate(raw):
        item_at = _mark(raw, i, where)
        if not isinstance(item, Mapping):
            errors.append(f"{item_at}: {SECTION}.thresholds[{i}] must be a mapping with at least 'name'")
            continue
        try:
            out.append(threshold_spec(item, f"{item_at}: {SECTION}.thresholds[{i}]"))
        except ConfigError as exc:
            errors.append(str(exc))
    return out


def with_weights(config: JudgeConfig, metric_weights: Mapping[str, float], display: str) -> JudgeConfig:
    """Fold the metrics' `weight:` into the group weights and check them against the metrics."""
    groups = dict(config.group_weights)
    by_metric = {m.name: m for m in config.metrics}
    for name, weight in metric_weights.items():
        if name not in by_metric:
            continue
        group = by_metric[name].group_name
        if group in groups and groups[group] != weight:
            raise ConfigError(
                f"{display}: the group '{group}' has two weights ({groups[group]:g} and {weight:g} from "
                f"metric {name}); give the weight once"
            )
        groups[group] = weight
    used = {m.group_name for m in config.metrics}
    for group in groups:
        if group not in used:
            raise ConfigError(
                f"{display}: the group '{group}' has a weight but no metric is in it"
                f"{did_you_mean(group, sorted(used))}; used groups: {', '.join(sorted(used)) or 'none'}"
            )
    unweighted = sorted(used - set(groups))
    if unweighted and sum(groups.values()) >= 100:
        raise ConfigError(
            f"{display}: the group weights add up to {sum(groups.values()):g}, leaving nothing of 100 for "
            f"{', '.join(unweighted)}; lower them or weigh every group"
        )
    if used and not unweighted and sum(groups.values()) <= 0:
        raise ConfigError(f"{display}: every group weight is 0; give at least one group a weight")
    return replace(config, group_weights=groups)


def load_analysis(path: Path, display: str, *, required: bool) -> AnalysisConfig | None:
    """The analysis config in `path`: its `analysis:` section, or the whole file when every key
    is an analysis key (a judge.yml). None when the file has no analysis and it is not `required`."""
    from aicd.errors import PipelineError
    from aicd.pipeline.loader import load_text

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{display}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{display}: is a directory, not a config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{display}: cannot read the config file: {exc}") from None
    doc: Any = None
    if text.strip():
        try:
            doc = load_text(text, display)
        except PipelineError as exc:
            raise ConfigError(str(exc)) from None
    if doc is not None and not isinstance(doc, Mapping):
        raise ConfigError(f"{display}:1:1: the config file must be a mapping (with an '{SECTION}:' section)")
    if doc and SECTION in doc:
        section = doc[SECTION]
        if section is None:
            section = {}
        if not isinstance(section, Mapping):
            raise ConfigError(f"{_mark(doc, SECTION, display)}: '{SECTION}' must be a mapping")
        return analysis_config(section, display)
    if doc and all(key in ANALYSIS_KEYS for key in doc):
        return analysis_config(doc, display)
    if required:
        raise ConfigError(
            f"{display}: no '{SECTION}:' section; add one (see docs/judge.md), e.g.\n"
            f"{SECTION}:\n  metrics:\n    - {{name: latency_ms, direction: increase}}"
        )
    return None
