"""`aicd gate`: check a model's metrics against thresholds; exit 0 (ship), 1 (do not), 2 (bad input)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aicd.delivery.config import CONFIG_FILE, DeliveryConfig, load_config
from aicd.delivery.gate import GateResult, Threshold, evaluate, fmt
from aicd.delivery.metrics_file import read_metrics_file
from aicd.delivery.model_uri import ModelURI, is_model_uri, parse_model_uri
from aicd.errors import ConfigError, NotFoundError

NO_THRESHOLDS = (
    "no thresholds to check: add 'gates:' to aicd.yml (e.g. '- {metric: accuracy, min: 0.9}') "
    "or give --min NAME=VALUE, --max NAME=VALUE or --max-drop NAME=VALUE[%]"
)


def _pair(flag: str, text: str) -> tuple[str, str]:
    name, sep, value = text.rpartition("=")
    if not sep or not name.strip() or not value.strip():
        raise ConfigError(f"{flag} {text!r}: expected METRIC=VALUE, e.g. {flag} accuracy=0.9")
    return name.strip(), value.strip()


def _number(flag: str, text: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ConfigError(f"{flag} {text!r}: the threshold must be a finite number")
    return number


def merge_thresholds(
    config_gates: Sequence[Threshold],
    mins: Sequence[str] = (),
    maxes: Sequence[str] = (),
    max_drops: Sequence[str] = (),
    lower_is_better: Sequence[str] = (),
) -> list[Threshold]:
    """Config gates, with flags adding thresholds or overriding them per metric."""
    by_metric: dict[str, Threshold] = {}
    for t in config_gates:
        by_metric[t.metric] = t

    def update(metric: str, **changes: Any) -> None:
        current = by_metric.get(metric, Threshold(metric=metric))
        by_metric[metric] = dataclasses.replace(current, **changes)

    for text in mins:
        name, value = _pair("--min", text)
        update(name, min=_number("--min", text, value))
    for text in maxes:
        name, value = _pair("--max", text)
        update(name, max=_number("--max", text, value))
    for text in max_drops:
        name, value = _pair("--max-drop", text)
        pct = value.endswith("%")
        limit = _number("--max-drop", text, value.removesuffix("%").strip())
        if limit < 0:
            raise ConfigError(f"--max-drop {text!r}: the allowed drop must be 0 or more")
        if pct:
            update(name, max_regression=None, max_regression_pct=limit)
        else:
            update(name, max_regression=limit, max_regression_pct=None)
    for name in lower_is_better:
        if name not in by_metric:
            raise ConfigError(
                f"--lower-is-better {name}: no threshold on {name}; "
                f"give --max {name}=VALUE or --max-drop {name}=VALUE too"
            )
        update(name, higher_is_better=False)
    out = list(by_metric.values())
    if not out:
        raise ConfigError(NO_THRESHOLDS)
    return out


def _json_number(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return fmt(value)


def _metrics_json(metrics: dict[str, float]) -> dict[str, float | str | None]:
    return {k: _json_number(v) for k, v in metrics.items()}


def build_report(
    result: GateResult,
    metrics_file: str,
    metrics: dict[str, float],
    baseline_file: str | None,
    baseline: dict[str, float] | None,
    source: BaselineSource | None = None,
) -> dict[str, Any]:
    checks = [
        {
            "metric": c.metric,
            "kind": c.kind,
            "threshold": c.threshold,
            "limit": _json_number(c.limit),
            "value": _json_number(c.value),
            "baseline": _json_number(c.baseline),
            "change": _json_number(c.change),
            "verdict": c.verdict,
            "reason": c.reason,
        }
        for c in result.checks
    ]
    described: dict[str, Any] | None = None
    if baseline is not None:
        if source is not None and source.uri is not None:
            described = {"model_uri": source.uri, "model": source.model, "version": source.version}
        else:
            described = {"file": source.file if source is not None else baseline_file}
        described["metrics"] = _metrics_json(baseline)
    payload = {
        "passed": result.passed,
        "metrics_file": metrics_file,
        "metrics": _metrics_json(metrics),
        "baseline": described,
        "checks": checks,
        "failed": len(result.failures),
    }
    if source is not None and source.note:
        payload["baseline_note"] = source.note
    return payload


NO_BASELINE = (
    "no baseline: checking values only (give --baseline FILE or models:/NAME@ALIAS to check changes too)"
)


@dataclass(frozen=True)
class BaselineSource:
    """Where the baseline came from: a file, or a registry version (uri, model, version)."""

    file: str | None = None
    uri: str | None = None
    model: str | None = None
    version: int | None = None
    note: str = ""  # e.g. why there is no baseline yet


def baseline_origin(cli_baseline: str | None, config: DeliveryConfig | None) -> str:
    """Where the baseline was named, for errors: the flag, or file:line:col of aicd.yml's `against:`."""
    if cli_baseline:
        return f"--baseline {cli_baseline}"
    against = [t for t in (config.gates if config is not None else []) if t.against]
    if not against:
        return "the baseline"
    where = against[0].against_at or (config.file if config is not None else "aicd.yml")
    return f"{where}: against: {against[0].against}"


def baseline_reference(cli_baseline: str | None, config: DeliveryConfig | None) -> str | None:
    """--baseline, else the `against:` of aicd.yml's gates as a models:/ URI (or None)."""
    if cli_baseline:
        return cli_baseline
    if config is None:
        return None
    against = sorted({t.against for t in config.gates if t.against})
    if not against:
        return None
    if len(against) > 1:
        raise ConfigError(
            f"{config.file}: the gates compare against different baselines ({', '.join(against)}); "
            "a gate has one baseline: use the same 'against:' everywhere, or --baseline"
        )
    alias = against[0]
    if is_model_uri(alias):
        return alias
    name = config.model.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"{config.file}: 'against: {alias}' needs the model's registered name: add "
            f"'model: {{name: NAME}}' to {config.file}, or write 'against: models:/NAME@{alias}'"
        )
    return f"models:/{name}@{alias}"


def load_baseline(
    cwd: Path, reference: str | None, origin: str = "the baseline"
) -> tuple[dict[str, float] | None, BaselineSource | None]:
    """The baseline's metrics: a metrics file, or the registry version a models:/ URI names.

    :meth:`aicd.delivery.registry.Registry.baseline` decides: only a first release (no version
    yet) is no baseline (value checks only, with a note); a baseline that cannot be resolved
    (a mistyped model or alias) is a ConfigError (exit 2) naming `origin`.
    """
    if reference is None:
        return None, None
    if not is_model_uri(reference):
        return read_metrics_file(cwd / reference, reference), BaselineSource(file=reference)
    from aicd.cli.remote import server_from_env
    from aicd.delivery.registry import Registry

    uri = parse_model_uri(reference)
    server = server_from_env()
    if server is not None:
        return _remote_baseline(server, uri)
    registry = Registry.open_local_if_exists(cwd)
    if registry is None:
        note = f"no baseline yet: {uri} does not exist (nothing is registered); checking values only"
        return None, BaselineSource(uri=str(uri), model=uri.name, note=note)
    with registry:
        try:
            found = registry.baseline(uri)
        except ConfigError as exc:
            raise ConfigError(f"{origin}: {exc}") from None
    if found.version is None:
        note = f"no baseline yet: {uri} does not exist ({found.note}); checking values only"
        return None, BaselineSource(uri=str(uri), model=uri.name, note=note)
    version = found.version
    metrics = found.metrics or {}
    return metrics, BaselineSource(uri=str(uri), model=version.model, version=version.version)


def _remote_baseline(server: str, uri: ModelURI) -> tuple[dict[str, float] | None, BaselineSource]:
    """The baseline from a server's registry (a job's token, or AICD_TOKEN)."""
    from aicd.cli.remote import Client, segment

    if uri.alias is not None:
        path = f"/models/{segment(uri.name)}/aliases/{segment(uri.alias)}"
    else:
        path = f"/models/{segment(uri.name)}/versions/{uri.version if uri.version is not None else 'latest'}"
    try:
        with Client(server, os.environ.get("AICD_TOKEN")) as client:
            found = client.get(path)
    except NotFoundError as exc:
        note = f"no baseline yet: {uri} does not exist ({exc}); checking values only"
        return None, BaselineSource(uri=str(uri), model=uri.name, note=note)
    metrics = {str(k): float(v) for k, v in (found.get("metrics") or {}).items()}
    return metrics, BaselineSource(uri=str(uri), model=str(found["model"]), version=int(found["version"]))


def _rows(result: GateResult) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for c in result.checks:
        change = ""
        if c.change is not None:
            change = fmt(c.change) if c.change <= 0 or not math.isfinite(c.change) else f"+{fmt(c.change)}"
        rows.append((c.metric, fmt(c.value), fmt(c.baseline), change, c.threshold, c.verdict.upper()))
    return rows


COLUMNS = ("metric", "value", "baseline", "change", "threshold", "verdict")


def _summary(result: GateResult) -> str:
    total = len(result.checks)
    if result.passed:
        return f"gate passed: {total} check{'s' if total != 1 else ''} passed"
    return f"gate FAILED: {len(result.failures)} of {total} checks failed; the model is not fit to ship"


def _print_plain(result: GateResult) -> None:
    rows = [COLUMNS, *_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    out = sys.stdout
    for r in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() + "\n")
    for c in result.failures:
        out.write(f"FAIL {c.metric}: {c.reason}\n")
    for c in result.checks:
        if c.verdict == "skip":
            out.write(f"SKIP {c.metric}: {c.reason}\n")
    out.write(_summary(result) + "\n")


def _print_rich(result: GateResult) -> None:
    from rich.console import Console
    from rich.table import Table

    from aicd.cli.terminal import text

    console = Console(highlight=False)
    table = Table(title_justify="left")
    for col in COLUMNS:
        table.add_column(col, justify="right" if col in ("value", "baseline", "change") else "left")
    styles = {"PASS": "green", "FAIL": "bold red", "SKIP": "yellow"}
    for row in _rows(result):
        table.add_row(*(text(cell) for cell in row[:-1]), text(row[-1], styles.get(row[-1], "")))
    console.print(table)
    for c in result.failures:
        console.print(text(f"FAIL {c.metric}: {c.reason}", "red"))
    for c in result.checks:
        if c.verdict == "skip":
            console.print(text(f"SKIP {c.metric}: {c.reason}", "yellow"))
    console.print(text(_summary(result), "green" if result.passed else "bold red"))


def gate_command(
    *,
    cwd: Path,
    metrics_file: str,
    config: str | None,
    baseline_file: str | None,
    mins: Sequence[str],
    maxes: Sequence[str],
    max_drops: Sequence[str],
    lower_is_better: Sequence[str],
    report: str | None,
    as_json: bool,
) -> int:
    """Run the gate; returns the exit code (0 pass, 1 fail). Bad input raises ConfigError (exit 2)."""
    loaded: DeliveryConfig | None = None
    if config is not None:
        loaded = load_config(cwd / config, config)
    elif (cwd / CONFIG_FILE).is_file():
        loaded = load_config(cwd / CONFIG_FILE, CONFIG_FILE)
    gates = loaded.gates if loaded is not None else []
    thresholds = merge_thresholds(gates, mins, maxes, max_drops, lower_is_better)
    metrics = read_metrics_file(cwd / metrics_file, metrics_file)
    reference = baseline_reference(baseline_file, loaded)
    baseline, source = load_baseline(cwd, reference, baseline_origin(baseline_file, loaded))
    result = evaluate(thresholds, metrics, baseline, source=metrics_file)
    payload = build_report(result, metrics_file, metrics, baseline_file, baseline, source)
    text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
    if report:
        try:
            target = cwd / report
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{report}: cannot write the gate report: {exc.strerror or exc}") from None
    if as_json:
        sys.stdout.write(json.dumps(payload, allow_nan=False) + "\n")
    else:
        if baseline is None:
            sys.stdout.write((source.note if source is not None and source.note else NO_BASELINE) + "\n")
        elif source is not None and source.uri is not None:
            sys.stdout.write(f"baseline: {source.uri} = models:/{source.model}/{source.version}\n")
        if sys.stdout.isatty():
            _print_rich(result)
        else:
            _print_plain(result)
    return 0 if result.passed else 1
