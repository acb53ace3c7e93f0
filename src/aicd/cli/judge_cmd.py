"""`aicd judge`: Kayenta's canary judge on two sample files; exit 0 pass, 1 fail or marginal, 2 bad input."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from aicd.delivery.drift import DriftResult
from aicd.delivery.judge import (
    CLES,
    PASS,
    VERDICT_PASS,
    JudgeResult,
    MetricResult,
)
from aicd.delivery.judge_config import (
    AnalysisConfig,
    load_analysis,
)
from aicd.delivery.judge_run import judge_samples, merge_metrics
from aicd.delivery.samples import read_samples
from aicd.errors import ConfigError

CONFIG_FILE = "aicd.yml"
METRIC_FLAG_HELP = (
    "NAME[:DIRECTION][:critical][:must_have_data][:KEY=VALUE...], e.g. "
    "latency_ms:increase:critical:allowed_increase=1.2 (repeat). DIRECTION: increase, decrease or "
    "either (which change is bad); KEY: group, weight, min_samples, nan_strategy, outliers, "
    "outlier_factor, measure, allowed_increase, allowed_decrease, critical_increase, critical_decrease."
)


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


# --- the command ---------------------------------------------------------------------------------


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
    judgement = judge_samples(
        analysis,
        stable,
        canary,
        metrics=metrics,
        weights=weights,
        pass_threshold=pass_threshold,
        marginal_threshold=marginal_threshold,
    )
    result, drift, notes = judgement.result, judgement.drift, judgement.notes
    verdict, reason, payload = judgement.verdict, judgement.reason, judgement.payload
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
