"""`aicd judge`: Kayenta's canary judge on two sample files; exit 0 pass, 1 fail or marginal, 2 bad input."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from aicd.delivery.drift import DRIFT_FAIL, DriftResult, DriftThresholds, prediction_drift
from aicd.delivery.judge import (
    CLES,
    PASS,
    VERDICT_FAIL,
    VERDICT_PASS,
    JudgeConfig,
    JudgeResult,
    MetricConfig,
    MetricResult,
)
from aicd.delivery.judge import (
    judge as run_judge,
)
from aicd.delivery.judge_config import (
    EFFECT_KEYS,
    METRIC_KEYS,
    AnalysisConfig,
    load_analysis,
    metric_config,
    with_weights,
)
from aicd.delivery.judge_json import drift_json, judge_json
from aicd.delivery.samples import Samples, read_samples
from aicd.errors import ConfigError

CONFIG_FILE = "aicd.yml"
METRIC_FLAG_HELP = (
    "NAME[:DIRECTION][:critical][:must_have_data][:KEY=VALUE...], e.g. "
    "latency_ms:increase:critical:allowed_increase=1.2 (repeat). DIRECTION: increase, decrease or "
    "either (which change is bad); KEY: group, weight, min_samples, nan_strategy, outliers, "
    "outlier_factor, measure, allowed_increase, allowed_decrease, critical_increase, critical_decrease."
)


def parse_metric_flag(text: str) -> tuple[dict[str, Any], set[str]]:
    """(raw mapping as in aicd.yml, the keys it gives) from one --metric value; ConfigError if malformed."""
    where = f"--metric {text!r}"
    parts = [p.strip() for p in text.split(":")]
    if not parts[0]:
        raise ConfigError(f"{where}: the metric name comes first, e.g. --metric latency_ms:increase")
    raw: dict[str, Any] = {"name": parts[0]}
    effect: dict[str, Any] = {}
    given: set[str] = set()
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            if key in ("increase", "decrease", "either"):
                raw["direction"] = key
                given.add("direction")
            elif key in ("critical", "must_have_data"):
                raw[key] = True
                given.add(key)
            else:
                raise ConfigError(
                    f"{where}: {part!r} is not a direction (increase, decrease, either), 'critical', "
                    "'must_have_data' or KEY=VALUE"
                )
            continue
        value = value.strip()
        target = effect if key in EFFECT_KEYS else raw
        if key == "name" or (key not in EFFECT_KEYS and key not in METRIC_KEYS):
            raise ConfigError(
                f"{where}: unknown key {key!r}; known: {', '.join((*METRIC_KEYS[1:], *EFFECT_KEYS))}"
            )
        target[key] = _flag_value(key, value)
        given.add(key)
    if effect:
        raw["effect_size"] = effect
    return raw, given


def _flag_value(key: str, value: str) -> Any:
    if key in ("group", "nan_strategy", "outliers", "measure", "direction"):
        return value
    if key in ("critical", "must_have_data"):
        return {"true": True, "false": False}.get(value.lower(), value)
    if key == "min_samples":
        try:
            return int(value)
        except ValueError:
            return value
    try:
        return float(value)
    except ValueError:
        return value


def _same(where: str, _key: str) -> str:
    return where


def merge_metrics(
    configured: Sequence[MetricConfig], weights: dict[str, float], flags: Sequence[str]
) -> tuple[list[MetricConfig], dict[str, float]]:
    """The configured metrics with --metric flags adding metrics or overriding the fields they give."""
    by_name = {m.name: m for m in configured}
    out_weights = dict(weights)
    for text in flags:
        raw, given = parse_metric_flag(text)
        errors: list[str] = []
        where = f"--metric {text!r}"
        metric, weight = metric_config(raw, where, functools.partial(_same, where), errors)
        if errors or metric is None:
            raise ConfigError("\n".join(e.removeprefix(f"{where}: ") for e in errors))
        current = by_name.get(metric.name)
        if current is None:
            by_name[metric.name] = metric
        else:
            fields = {k: getattr(metric, k) for k in given if k in MetricConfig.__dataclass_fields__}
            effect = {k: getattr(metric.effect, k) for k in given if k in EFFECT_KEYS}
            if effect:
                fields["effect"] = dataclasses.replace(current.effect, **effect)
            by_name[metric.name] = dataclasses.replace(current, **fields)
        if weight is not None:
            out_weights[metric.name] = weight
    return list(by_name.values()), out_weights


def _load_config(cwd: Path, config: str | None) -> AnalysisConfig:
    if config is not None:
        loaded = load_analysis(cwd / config, config, required=True)
    elif (cwd / CONFIG_FILE).is_file():
        loaded = load_analysis(cwd / CONFIG_FILE, CONFIG_FILE, required=False)
    else:
        loaded = None
    return loaded or AnalysisConfig()


# --- output --------------------------------------------------------------------------------------

COLUMNS = ("metric", "stable median", "canary median", "effect", "p-value", "class", "weight")


def _fmt(value: float | None, digits: int = 6) -> str:
    if value is None or math.isnan(value):
        return ""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}"


def _effect_text(r: MetricResult) -> str:
    if math.isnan(r.effect):
        return "NaN" if r.test is not None else ""
    return _fmt(r.effect, 3) if r.config.effect.measure == CLES else f"{r.effect:.3g}x"


def _rows(result: JudgeResult) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for r in result.metrics:
        p_value = _fmt(r.test.p_value, 3) if r.test is not None else ""
        name = r.name + (" *" if r.config.critical else "")
        rows.append(
            (
                name,
                _fmt(r.stable.median),
                _fmt(r.canary.median),
                _effect_text(r),
                p_value,
                r.classification,
                f"{r.weight:.3g}",
            )
        )
    return rows


def _notes(result: JudgeResult, drift: DriftResult | None, notes: list[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for r in result.metrics:
        if r.classification != PASS:
            out.append((r.classification, f"{r.classification} {r.name}: {r.reason}"))
    if drift is not None:
        out.append((drift.verdict, f"drift ({drift.verdict}): {drift.reason}"))
    out.extend(("note", n) for n in notes)
    return out


def _summary(result: JudgeResult, verdict: str, reason: str) -> str:
    bands = f"pass >= {result.pass_threshold:g}, marginal >= {result.marginal_threshold:g}"
    return f"score {result.score:.4g} ({bands}): {verdict.upper()}: {reason}"


def _print_plain(
    result: JudgeResult, drift: DriftResult | None, notes: list[str], verdict: str, reason: str
) -> None:
    rows = [COLUMNS, *_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    out = sys.stdout
    for r in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() + "\n")
    for _, line in _notes(result, drift, notes):
        out.write(line + "\n")
    out.write(_summary(result, verdict, reason) + "\n")


def _print_rich(
    result: JudgeResult, drift: DriftResult | None, notes: list[str], verdict: str, reason: str
) -> None:
    from rich.console import Console
    from rich.table import Table

    from aicd.cli.terminal import text

    console = Console(highlight=False)
    table = Table(title_justify="left")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in ("metric", "class") else "right")
    styles = {"Pass": "green", "High": "bold red", "Low": "bold red", "Nodata": "yellow", "Error": "bold red"}
    for row in _rows(result):
        cells = [text(cell) for cell in row]
        cells[5] = text(row[5], styles.get(row[5], "bold red"))
        table.add_row(*cells)
    console.print(table)
    for kind, line in _notes(result, drift, notes):
        console.print(text(line, "yellow" if kind in ("Nodata", "warn", "note") else "red"))
    style = {"pass": "green", "marginal": "yellow"}.get(verdict, "bold red")
    console.print(text(_summary(result, verdict, reason), style))


def build_report(
    result: JudgeResult,
    drift: DriftResult | None,
    verdict: str,
    reason: str,
    stable_file: str,
    canary_file: str,
    notes: list[str],
) -> dict[str, Any]:
    judged = judge_json(result)
    return {
        "verdict": verdict,
        "passed": verdict == VERDICT_PASS,
        "reason": reason,
        "score": result.score,
        "judge_verdict": result.verdict,
        "pass_threshold": result.pass_threshold,
        "marginal_threshold": result.marginal_threshold,
        "stable_file": stable_file,
        "canary_file": canary_file,
        "metrics": judged["metrics"],
        "groups": judged["groups"],
        "drift": None if drift is None else drift_json(drift),
        "notes": notes,
    }


# --- the command ---------------------------------------------------------------------------------


def _drift(
    stable: Samples, canary: Samples, thresholds: DriftThresholds, notes: list[str]
) -> DriftResult | None:
    if stable.predictions and canary.predictions:
        return prediction_drift(stable.predictions, canary.predictions, thresholds)
    only = [s.file for s in (stable, canary) if s.predictions]
    if only:
        notes.append(f"predictions only in {only[0]}: the drift check needs them in both files")
    return None


def judge_command(
    *,
    cwd: Path,
    stable_file: str,
    canary_file: str,
    config: str | None,
    metric_flags: Sequence[str],
    pass_threshold: float | None,
    marginal_threshold: float | None,
    report: str | None,
    as_json: bool,
) -> int:
    """Run the judge; returns the exit code (0 pass, 1 fail or marginal). Bad input raises ConfigError."""
    analysis = _load_config(cwd, config)
    metrics, weights = merge_metrics(analysis.judge.metrics, dict(analysis.metric_weights), metric_flags)
    stable = read_samples(cwd / stable_file, stable_file)
    canary = read_samples(cwd / canary_file, canary_file)
    notes: list[str] = []
    if not metrics:
        names = list(dict.fromkeys([*stable.metrics, *canary.metrics]))
        metrics = [MetricConfig(name=n) for n in names]
        if names:
            notes.append("no metrics configured: every metric judged with the defaults (direction either)")
    else:
        configured = {m.name for m in metrics}
        extra = sorted({*stable.metrics, *canary.metrics} - configured)
        if extra:
            notes.append(f"not judged (not configured): {', '.join(extra)}")
    judge_config = JudgeConfig(
        metrics=tuple(metrics),
        group_weights=analysis.judge.group_weights,
        pass_threshold=analysis.judge.pass_threshold if pass_threshold is None else pass_threshold,
        marginal_threshold=analysis.judge.marginal_threshold
        if marginal_threshold is None
        else marginal_threshold,
    )
    if judge_config.marginal_threshold > judge_config.pass_threshold:
        raise ConfigError(
            f"the marginal threshold {judge_config.marginal_threshold:g} is above the pass threshold "
            f"{judge_config.pass_threshold:g}; the marginal band lies below the pass threshold"
        )
    judge_config = with_weights(judge_config, weights, analysis.file or "--metric")
    drift = _drift(stable, canary, analysis.drift, notes)
    if not metrics and drift is None:
        raise ConfigError(f"{stable_file}, {canary_file}: no metrics and no predictions to judge")
    result = run_judge(
        judge_config, stable.metrics, canary.metrics, stable_name=stable_file, canary_name=canary_file
    )
    verdict, reason = result.verdict, result.reason
    if not metrics:
        verdict, reason = VERDICT_PASS, "no metrics to judge"
    if drift is not None and drift.verdict == DRIFT_FAIL:
        verdict, reason = VERDICT_FAIL, f"{reason}; {drift.reason}" if metrics else drift.reason
    payload = build_report(result, drift, verdict, reason, stable_file, canary_file, notes)
    if report:
        try:
            target = cwd / report
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{report}: cannot write the judge report: {exc.strerror or exc}") from None
    if as_json:
        sys.stdout.write(json.dumps(payload, allow_nan=False) + "\n")
    elif sys.stdout.isatty():
        _print_rich(result, drift, notes, verdict, reason)
    else:
        _print_plain(result, drift, notes, verdict, reason)
    return 0 if verdict == VERDICT_PASS else 1


@click.command()
@click.argument("stable_file")
@click.argument("canary_file")
@click.option(
    "--config",
    "config",
    default=None,
    help="aicd.yml with an 'analysis:' section, or a judge.yml of that section (default: aicd.yml).",
)
@click.option("--metric", "metric_flags", multiple=True, metavar="SPEC", help=METRIC_FLAG_HELP)
@click.option(
    "--pass-threshold", type=click.FloatRange(0, 100), default=None, help="Score to pass (default 95)."
)
@click.option(
    "--marginal-threshold",
    type=click.FloatRange(0, 100),
    default=None,
    help="Score to be marginal (default 75).",
)
@click.option("--report", default=None, help="Also write the JSON report to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def judge(
    stable_file: str,
    canary_file: str,
    config: str | None,
    metric_flags: tuple[str, ...],
    pass_threshold: float | None,
    marginal_threshold: float | None,
    report: str | None,
    as_json: bool,
) -> None:
    """Judge CANARY_FILE against STABLE_FILE (JSON or CSV samples) as Kayenta does.

    Per metric a Mann-Whitney U test at 98% confidence classifies the canary Pass, High, Low or
    Nodata; the weighted share of passing metrics is the score. Exit 0 pass, 1 fail or marginal,
    2 bad input.
    """
    code = judge_command(
        cwd=Path.cwd(),
        stable_file=stable_file,
        canary_file=canary_file,
        config=config,
        metric_flags=metric_flags,
        pass_threshold=pass_threshold,
        marginal_threshold=marginal_threshold,
        report=report or None,
        as_json=as_json,
    )
    sys.exit(code)
