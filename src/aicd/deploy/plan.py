"""How a release goes live: the rollout plan of one environment, from `aicd.yml`'s `environments:`.

    environments:
      staging:
        strategy: blue-green      # recreate | blue-green | canary
        rollback_window: 60s      # blue-green: the old revision keeps running this long
        auto_promote: true        # blue-green: false = wait for `aicd promote staging`
        port: 8080                # the environment's stable address (default: a free port, kept)
      production:
        strategy: canary
        steps:                    # Argo Rollouts' canary steps
          - set_weight: 20
          - pause: 30s            # a duration, or {} / "" to wait for `aicd promote production`
          - analysis: {}          # judge the canary now (thresholds, Kayenta judge, drift)
          - set_weight: 50
          - pause: 30s
          - labels: 200           # wait until 200 labels arrived for each side (docs/feedback.md)
        analysis_interval: 5s     # override every threshold check's interval (short canaries)
        predictions: {path: /predict, field: predictions}   # for the prediction drift check
        feedback: {labels: classes, window: 1h, margin: 0.02}  # live quality from delayed labels

The CLI's `--strategy` and `--step` flags override what the file says. Every error names the
file, line and column and the key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from aicd.delivery.thresholds import parse_duration
from aicd.deploy.router.http import LIMITS, check_limits
from aicd.errors import ConfigError
from aicd.suggest import did_you_mean

RECREATE = "recreate"
BLUE_GREEN = "blue-green"
CANARY = "canary"
SHADOW = "shadow"
EXPERIMENT = "experiment"
STRATEGIES = (RECREATE, BLUE_GREEN, CANARY, SHADOW, EXPERIMENT)
STEPPED = (CANARY, SHADOW)  # strategies that run steps
ENVIRONMENT_KEYS = (
    "strategy",
    "steps",
    "rollback_window",
    "auto_promote",
    "port",
    "router",
    "router_limits",
    "tier",
    "analysis_interval",
    "pre_promotion_analysis",
    "post_promotion_analysis",
    "predictions",
    "feedback",
    "shadow",
    "experiment",
    "slo",
)
SHADOW_KEYS = ("percent", "methods", "agreement", "tolerance", "min_compared", "queue")
DEFAULT_SHADOW_DURATION = 60.0
EXPERIMENT_KEYS = (
    "id",
    "key",
    "weights",
    "revisions",
    "metric",
    "metric_header",
    "goal",
    "test",
    "effect",
    "baseline",
    "sd",
    "alpha",
    "power",
    "samples",
    "duration",
    "override",
)
DEFAULT_EXPERIMENT_DURATION = 3600.0
FEEDBACK_KEYS = ("labels", "window", "max_requests", "margin", "alpha", "min_labels")
DEFAULT_LABELS_TIMEOUT = 600.0  # a `labels` step waits at most this long
ROUTERS = ("aicd", "haproxy")
TIERS = ("production", "staging", "testing", "development", "other")
STEP_KINDS = ("set_weight", "pause", "analysis", "labels", "shadow")
DEFAULT_ROLLBACK_WINDOW = 60.0


@dataclass(frozen=True)
class Step:
    """One canary step: set_weight (weight), pause (duration; None waits for promote), analysis,
    labels (count: wait until that many labels arrived for each side's answers, at most duration)."""

    kind: str
    weight: int | None = None
    duration: float | None = None
    count: int | None = None

    def describe(self) -> str:
        if self.kind == "set_weight":
            return f"set weight {self.weight}%"
        if self.kind == "pause":
            return "pause until promoted" if self.duration is None else f"pause {self.duration:g}s"
        if self.kind == "labels":
            return f"wait for {self.count} labels per revision (at most {self.duration or 0:g}s)"
        if self.kind == "shadow":
            return f"shadow traffic for {self.duration or 0:g}s (users get stable's answers)"
        return "analysis"

    def to_json(self) -> dict[str, Any]:
        out = {"kind": self.kind, "weight": self.weight, "duration": self.duration}
        if self.count is not None:
            out["count"] = self.count
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Step:
        return cls(str(data["kind"]), data.get("weight"), data.get("duration"), data.get("count"))


DEFAULT_CANARY_STEPS = (
    Step("set_weight", weight=20),
    Step("pause", duration=30.0),
    Step("analysis"),
    Step("set_weight", weight=50),
    Step("pause", duration=30.0),
)


@dataclass(frozen=True)
class RolloutPlan:
    strategy: str = BLUE_GREEN
    steps: tuple[Step, ...] = ()
    rollback_window: float = DEFAULT_ROLLBACK_WINDOW
    auto_promote: bool = True
    port: int | None = None
    router: str = "aicd"
    router_limits: Mapping[str, int] | None = None  # max_head_bytes, max_headers, max_url_bytes
    tier: str | None = None
    analysis_interval: float | None = None
    pre_promotion_analysis: float = 0.0  # blue-green: seconds of checks on the preview address
    post_promotion_analysis: float = 0.0  # blue-green: seconds of checks after the switch
    predictions: str | None = None  # "PATH:FIELD": the router counts this JSON field's values
    feedback: Mapping[str, Any] | None = None  # checked FEEDBACK_KEYS (window in seconds)
    shadow: Mapping[str, Any] | None = None  # checked SHADOW_KEYS
    experiment: Mapping[str, Any] | None = None  # checked EXPERIMENT_KEYS (duration in seconds)
    slo: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "steps": [s.to_json() for s in self.steps],
            "rollback_window": self.rollback_window,
            "auto_promote": self.auto_promote,
            "port": self.port,
            "router": self.router,
            "router_limits": dict(self.router_limits) if self.router_limits else None,
            "tier": self.tier,
            "analysis_interval": self.analysis_interval,
            "pre_promotion_analysis": self.pre_promotion_analysis,
            "post_promotion_analysis": self.post_promotion_analysis,
            "predictions": self.predictions,
            "feedback": dict(self.feedback) if self.feedback is not None else None,
            "shadow": dict(self.shadow) if self.shadow is not None else None,
            "experiment": dict(self.experiment) if self.experiment is not None else None,
            "slo": dict(self.slo) if self.slo is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RolloutPlan:
        return cls(
            strategy=str(data["strategy"]),
            steps=tuple(Step.from_json(s) for s in data.get("steps") or ()),
            rollback_window=float(data.get("rollback_window", DEFAULT_ROLLBACK_WINDOW)),
            auto_promote=bool(data.get("auto_promote", True)),
            port=data.get("port"),
            router=str(data.get("router") or "aicd"),
            router_limits=data.get("router_limits") or None,
            tier=data.get("tier"),
            analysis_interval=data.get("analysis_interval"),
            pre_promotion_analysis=float(data.get("pre_promotion_analysis") or 0.0),
            post_promotion_analysis=float(data.get("post_promotion_analysis") or 0.0),
            predictions=data.get("predictions"),
            feedback=data.get("feedback"),
            shadow=data.get("shadow"),
            experiment=data.get("experiment"),
            slo=data.get("slo"),
        )

    def with_overrides(self, strategy: str | None, steps: Sequence[Step] | None) -> RolloutPlan:
        plan = self
        if strategy is not None:
            if strategy not in STRATEGIES:
                raise ConfigError(
                    f"--strategy {strategy}: unknown strategy{did_you_mean(strategy, STRATEGIES)}; "
                    f"use one of {', '.join(STRATEGIES)}"
                )
            plan = replace(plan, strategy=strategy)
        if steps is not None:
            plan = replace(plan, steps=tuple(steps))
        if plan.strategy in STEPPED and not plan.steps:
            plan = replace(plan, steps=default_steps(plan.strategy))
        if plan.strategy == EXPERIMENT and plan.experiment is None:
            settings, problems = parse_experiment({}, "--strategy experiment")
            if plan.predictions is None:
                problems.append(
                    "--strategy experiment: the default metric is live accuracy from labels; set "
                    "environments.<env>.predictions and an experiment: section (docs/deploy.md)"
                )
            if problems:
                raise ConfigError("\n".join(problems))
            plan = replace(plan, experiment=settings)
        if plan.strategy not in STEPPED and plan.steps and steps is not None:
            raise ConfigError(
                f"--step is for the canary and shadow strategies; this deployment is {plan.strategy}"
            )
        return plan


def _duration(value: Any) -> float:
    return parse_duration(value, "duration")


def parse_step_text(text: str) -> Step:
    """A `--step` flag: `weight=20`, `pause=30s`, `pause` (until promoted), `analysis`, `labels=200`."""
    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")
    if key in ("weight", "set_weight") and sep:
        return _weight_step(value.strip(), f"--step {text}")
    if key == "pause":
        if not sep or not value.strip():
            return Step("pause")
        return Step("pause", duration=parse_duration(value.strip(), f"--step {text}"))
    if key == "analysis" and not sep:
        return Step("analysis")
    if key == "labels" and sep:
        return _labels_step(value.strip(), f"--step {text}")
    if key == "shadow":
        seconds = value.strip() if sep and value.strip() else DEFAULT_SHADOW_DURATION
        return Step("shadow", duration=parse_duration(seconds, f"--step {text}"))
    raise ConfigError(
        f"--step {text}: not a step; write weight=20, pause=30s, pause (wait for `aicd promote`), "
        "analysis or labels=200"
    )


def _labels_step(value: Any, where: str) -> Step:
    """`labels: 200` or `labels: {count: 200, timeout: 10m}`."""
    timeout: Any = DEFAULT_LABELS_TIMEOUT
    if isinstance(value, Mapping):
        unknown = sorted(set(map(str, value)) - {"count", "timeout"})
        if unknown:
            raise ConfigError(f"{where}: labels takes count and timeout (not {', '.join(unknown)})")
        timeout = value.get("timeout", DEFAULT_LABELS_TIMEOUT)
        value = value.get("count")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10_000_000:
        raise ConfigError(f"{where}: labels must be a whole number of labels, 1 or more (is {value!r})")
    return Step("labels", duration=parse_duration(timeout, f"{where}: timeout"), count=value)


def parse_feedback(value: Any, where: str) -> tuple[dict[str, Any], list[str]]:
    """`environments.<env>.feedback`: the router's join window and how live quality is judged."""
    from aicd.delivery.live_quality import parse_quality

    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        return {}, [f"{where} must be a mapping of {', '.join(FEEDBACK_KEYS)}"]
    known = ", ".join(FEEDBACK_KEYS)
    errors = [
        f"{where}: unknown key '{key}'{did_you_mean(str(key), FEEDBACK_KEYS)}; known: {known}"
        for key in value
        if key not in FEEDBACK_KEYS
    ]
    quality, quality_errors = parse_quality(value, where)
    errors += quality_errors
    out: dict[str, Any] = quality.to_json()
    try:
        out["window"] = parse_duration(value.get("window", "1h"), f"{where}.window")
    except ConfigError as exc:
        errors.append(str(exc))
    if out.get("window") is not None and not out.get("window", 0) > 0:
        errors.append(f"{where}.window must be above 0")
    most = value.get("max_requests", 100_000)
    if isinstance(most, bool) or not isinstance(most, int) or not 1 <= most <= 10_000_000:
        errors.append(f"{where}.max_requests must be a whole number from 1 to 10000000 (is {most!r})")
    else:
        out["max_requests"] = most
    return out, errors


def _weight_step(value: Any, where: str) -> Step:
    if isinstance(value, str):
        text = value.rstrip("%").strip()
        value = int(text) if text.isdigit() else value
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
        raise ConfigError(f"{where}: set_weight must be a whole number from 0 to 100 (is {value!r})")
    return Step("set_weight", weight=value)


def parse_environment(name: str, raw: Any, file: str) -> RolloutPlan:
    """The plan of environment `name` from its aicd.yml mapping (None: the defaults)."""
    if raw is None:
        return RolloutPlan()

    def at(node: Any, key: str | int | None = None) -> str:
        mark_of: Callable[[Any], object] | None = getattr(node, "mark_of", None)
        if key is not None and mark_of is not None:
            return str(mark_of(key))
        mark = getattr(node, "mark", None)
        return str(mark) if mark is not None else file

    where = f"environments.{name}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{at(raw)}: {where} must be a mapping of {', '.join(ENVIRONMENT_KEYS)}")
    errors: list[str] = []
    for key in raw:
        if key not in ENVIRONMENT_KEYS:
            errors.append(
                f"{at(raw, key)}: {where}: unknown key '{key}'{did_you_mean(str(key), ENVIRONMENT_KEYS)}; "
                f"known: {', '.join(ENVIRONMENT_KEYS)}"
            )
    plan = RolloutPlan()
    strategy = raw.get("strategy", BLUE_GREEN)
    if strategy not in STRATEGIES:
        errors.append(
            f"{at(raw, 'strategy')}: {where}.strategy: {strategy!r} is not a strategy"
            f"{did_you_mean(str(strategy), STRATEGIES)}; use one of {', '.join(STRATEGIES)}"
        )
        strategy = BLUE_GREEN
    plan = replace(plan, strategy=strategy)
    for key in ("rollback_window", "analysis_interval", "pre_promotion_analysis", "post_promotion_analysis"):
        if key in raw:
            try:
                changed: dict[str, Any] = {key: _duration(raw[key])}
                plan = replace(plan, **changed)
            except ConfigError as exc:
                errors.append(f"{at(raw, key)}: {where}.{key}: {exc}")
    if "auto_promote" in raw:
        if isinstance(raw["auto_promote"], bool):
            plan = replace(plan, auto_promote=raw["auto_promote"])
        else:
            errors.append(f"{at(raw, 'auto_promote')}: {where}.auto_promote must be true or false")
    if "port" in raw:
        port = raw["port"]
        if isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535:
            plan = replace(plan, port=port)
        else:
            errors.append(f"{at(raw, 'port')}: {where}.port must be a port number 1-65535 (is {port!r})")
    for key, choices in (("router", ROUTERS), ("tier", TIERS)):
        if key in raw:
            if raw[key] in choices:
                chosen: dict[str, Any] = {key: raw[key]}
                plan = replace(plan, **chosen)
            else:
                errors.append(
                    f"{at(raw, key)}: {where}.{key}: {raw[key]!r} is not one of {', '.join(choices)}"
                    f"{did_you_mean(str(raw[key]), choices)}"
                )
    if "router_limits" in raw:
        limits = raw["router_limits"]
        try:
            if not isinstance(limits, Mapping):
                raise ConfigError(
                    f"{where}.router_limits must be a mapping of {', '.join(LIMITS)} "
                    "(e.g. {max_head_bytes: 65536, max_headers: 100, max_url_bytes: 8192})"
                )
            plan = replace(plan, router_limits=check_limits(limits, f"{where}.router_limits"))
        except ConfigError as exc:
            errors.append(f"{at(raw, 'router_limits')}: {exc}")
        if plan.router != "aicd":
            errors.append(
                f"{at(raw, 'router_limits')}: {where}.router_limits apply to router: aicd; "
                "HAProxy has its own (tune.bufsize, tune.http.maxhdr)"
            )
    if "predictions" in raw:
        value = raw["predictions"]
        if (
            isinstance(value, Mapping)
            and isinstance(value.get("path"), str)
            and value["path"].startswith("/")
        ):
            plan = replace(plan, predictions=f"{value['path']}:{value.get('field') or 'predictions'}")
        else:
            errors.append(
                f"{at(raw, 'predictions')}: {where}.predictions must be "
                "{path: /predict, field: predictions} (the answers' JSON field holding the predicted classes)"
            )
    if "feedback" in raw:
        feedback, feedback_errors = parse_feedback(raw["feedback"], f"{where}.feedback")
        errors.extend(f"{at(raw, 'feedback')}: {line}" for line in feedback_errors)
        plan = replace(plan, feedback=feedback)
    if "shadow" in raw:
        shadow, shadow_errors = parse_shadow(raw["shadow"], f"{where}.shadow")
        errors.extend(f"{at(raw, 'shadow')}: {line}" for line in shadow_errors)
        plan = replace(plan, shadow=shadow)
    if "experiment" in raw or strategy == EXPERIMENT:
        experiment, experiment_errors = parse_experiment(raw.get("experiment") or {}, f"{where}.experiment")
        errors.extend(
            f"{at(raw, 'experiment') if 'experiment' in raw else at(raw)}: {e}" for e in experiment_errors
        )
        if experiment.get("metric") == "accuracy" and strategy == EXPERIMENT and plan.predictions is None:
            errors.append(
                f"{at(raw)}: {where}.experiment.metric accuracy is live accuracy from labels: set "
                f"{where}.predictions ({{path: /predict, field: predictions}}) so the router keeps each "
                "answer's prediction for its label (docs/feedback.md)"
            )
        if plan.router != "aicd" and strategy == EXPERIMENT:
            errors.append(
                f"{at(raw)}: {where}: experiments need router: aicd (HAProxy's assigns no variants)"
            )
        plan = replace(plan, experiment=experiment)
    if "slo" in raw:
        from aicd.reliability.slo import parse_slo

        try:
            plan = replace(plan, slo=parse_slo(raw["slo"], f"{where}.slo").to_json())
        except ConfigError as exc:
            errors.extend(f"{at(raw, 'slo')}: {line}" for line in str(exc).splitlines())
    if "steps" in raw:
        steps, step_errors = _steps(raw["steps"], f"{where}.steps", at, raw)
        errors.extend(step_errors)
        if strategy not in STEPPED and steps:
            errors.append(
                f"{at(raw, 'steps')}: {where}.steps: steps are for strategy: canary or shadow (is {strategy})"
            )
        plan = replace(plan, steps=tuple(steps))
    if errors:
        raise ConfigError("\n".join(errors))
    if plan.strategy in STEPPED and not plan.steps:
        plan = replace(plan, steps=default_steps(plan.strategy))
    return plan


def default_steps(strategy: str) -> tuple[Step, ...]:
    """Canary: 20%, pause, analysis, 50%, pause. Shadow: a minute of shadow traffic, then promotion."""
    if strategy == SHADOW:
        return (Step("shadow", duration=DEFAULT_SHADOW_DURATION),)
    return DEFAULT_CANARY_STEPS


def parse_shadow(value: Any, where: str) -> tuple[dict[str, Any], list[str]]:
    """`environments.<env>.shadow`: what is mirrored to the candidate and how its answers are judged."""
    if not isinstance(value, Mapping):
        return {}, [f"{where} must be a mapping of {', '.join(SHADOW_KEYS)}"]
    known = ", ".join(SHADOW_KEYS)
    errors = [
        f"{where}: unknown key '{key}'{did_you_mean(str(key), SHADOW_KEYS)}; known: {known}"
        for key in value
        if key not in SHADOW_KEYS
    ]
    out: dict[str, Any] = {}
    for key, low, high, default in (
        ("percent", 0.0, 100.0, 100.0),
        ("agreement", 0.0, 1.0, 0.95),
        ("tolerance", 0.0, float("inf"), 0.0),
    ):
        number = value.get(key, default)
        if isinstance(number, bool) or not isinstance(number, int | float) or not low <= number <= high:
            errors.append(f"{where}.{key} must be a number from {low:g} to {high:g} (is {number!r})")
            number = default
        out[key] = float(number)
    for key, default, high in (("min_compared", 50, 10_000_000), ("queue", 1000, 1_000_000)):
        whole = value.get(key, default)
        if isinstance(whole, bool) or not isinstance(whole, int) or not 1 <= whole <= high:
            errors.append(f"{where}.{key} must be a whole number from 1 to {high} (is {whole!r})")
            whole = default
        out[key] = whole
    methods = value.get("methods", ["GET", "HEAD", "OPTIONS"])
    if (
        not isinstance(methods, list)
        or not methods
        or not all(isinstance(m, str) and m.isalpha() and m.isupper() for m in methods)
    ):
        errors.append(f"{where}.methods must be a list of HTTP methods, e.g. [GET, POST] (is {methods!r})")
        methods = ["GET", "HEAD", "OPTIONS"]
    out["methods"] = list(methods)
    return out, errors


def parse_experiment(value: Any, where: str) -> tuple[dict[str, Any], list[str]]:
    """`environments.<env>.experiment`: variants, the user key, the metric and the planned sample size."""
    from aicd.delivery.experiment_stats import GOALS, METRICS, TESTS

    if not isinstance(value, Mapping):
        return {}, [f"{where} must be a mapping of {', '.join(EXPERIMENT_KEYS)}"]
    known = ", ".join(EXPERIMENT_KEYS)
    errors = [
        f"{where}: unknown key '{key}'{did_you_mean(str(key), EXPERIMENT_KEYS)}; known: {known}"
        for key in value
        if key not in EXPERIMENT_KEYS
    ]
    out: dict[str, Any] = {}
    ident = value.get("id")
    if ident is not None:
        if not isinstance(ident, str) or not 1 <= len(ident) <= 100:
            errors.append(f"{where}.id must be a string of 1 to 100 characters (is {ident!r})")
        else:
            out["id"] = ident
    key = value.get("key")
    if key is not None:
        if (
            not isinstance(key, Mapping)
            or len(key) != 1
            or next(iter(key)) not in ("header", "cookie")
            or not isinstance(next(iter(key.values())), str)
            or not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}", next(iter(key.values())))
        ):
            errors.append(
                f"{where}.key must be {{header: X-User-Id}} or {{cookie: uid}}: where the user's key is "
                f"(is {key!r})"
            )
        else:
            ((kind, name),) = key.items()
            if kind == "header" and name.lower() in _RESERVED_HEADERS:
                errors.append(
                    f"{where}.key: {name} is a header the router handles itself; name the user's own"
                )
            else:
                out["key"] = {kind: name}
    revisions = value.get("revisions") or {}
    if not isinstance(revisions, Mapping) or not all(
        isinstance(k, str) and re.fullmatch(r"[c-z]", k) and isinstance(v, str) and re.fullmatch(r"r\d+", v)
        for k, v in revisions.items()
    ):
        errors.append(
            f"{where}.revisions must map more variant names (c, d, ...) to earlier revisions (r3): "
            f"a is the serving revision, b the new one (is {revisions!r})"
        )
        revisions = {}
    out["revisions"] = dict(revisions)
    names = ["a", "b", *sorted(revisions)]
    weights = value.get("weights")
    if weights is None:
        share, extra = divmod(100, len(names))
        weights = {n: share + (1 if i < extra else 0) for i, n in enumerate(names)}
    if (
        not isinstance(weights, Mapping)
        or set(weights) != set(names)
        or not all(isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= 99 for w in weights.values())
        or sum(weights.values()) != 100
    ):
        errors.append(
            f"{where}.weights must give each variant ({', '.join(names)}) a whole percent from 1 to 99, "
            f"summing to 100 (is {weights!r})"
        )
        weights = {n: 100 // len(names) + (1 if i < 100 % len(names) else 0) for i, n in enumerate(names)}
    out["weights"] = {n: int(weights[n]) for n in names}
    for key_name, choices, default in (("metric", METRICS, "accuracy"), ("goal", GOALS, "maximize"),
                                       ("test", TESTS, "welch")):  # fmt: skip
        chosen = value.get(key_name, default)
        if chosen not in choices:
            errors.append(f"{where}.{key_name}: {chosen!r} is not one of {', '.join(choices)}")
            chosen = default
        out[key_name] = chosen
    header = value.get("metric_header")
    if header is not None and (
        not isinstance(header, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,100}", header)
    ):
        errors.append(f"{where}.metric_header must be a header name such as X-Revenue (is {header!r})")
        header = None
    out["metric_header"] = header
    numbers: dict[str, Any] = {}
    for key_name, low, high, fallback in (
        ("effect", 0.0, math.inf, 0.05 if out["metric"] == "accuracy" else None),
        ("baseline", 0.0, 1.0, 0.5),
        ("sd", 0.0, math.inf, None),
        ("alpha", 0.0, 0.5, 0.05),
        ("power", 0.5, 1.0, 0.8),
    ):
        number = value.get(key_name, fallback)
        if number is not None and (
            isinstance(number, bool) or not isinstance(number, int | float) or not low < number < high
        ):
            errors.append(
                f"{where}.{key_name} must be a number above {low:g} and below {high:g} (is {number!r})"
            )
            number = fallback
        numbers[key_name] = None if number is None else float(number)
    out.update(numbers)
    samples = value.get("samples")
    if samples is not None and (
        isinstance(samples, bool) or not isinstance(samples, int) or not 2 <= samples <= 10**8
    ):
        errors.append(
            f"{where}.samples must be a whole number from 2 to 100000000 per variant (is {samples!r})"
        )
        samples = None
    out["samples"] = samples
    if out["metric"] == "business" and samples is None and (out["sd"] is None or out["effect"] is None):
        errors.append(
            f"{where}: a business metric's sample size needs effect (the smallest difference worth "
            "finding) and sd (the metric's standard deviation), or samples per variant"
        )
    try:
        out["duration"] = parse_duration(
            value.get("duration", DEFAULT_EXPERIMENT_DURATION), f"{where}.duration"
        )
    except ConfigError as exc:
        errors.append(str(exc))
        out["duration"] = DEFAULT_EXPERIMENT_DURATION
    override = value.get("override", True)
    if not isinstance(override, bool):
        errors.append(f"{where}.override must be true or false (X-Aicd-Variant picks the variant)")
        override = True
    out["override"] = override
    if not errors:
        try:
            design = experiment_design(out)
            out["samples_per_variant"] = design.per_variant()
        except ValueError as exc:
            errors.append(f"{where}: {exc}")
    return out, errors


def experiment_design(settings: Mapping[str, Any]) -> Any:
    """The :class:`~aicd.delivery.experiment_stats.Design` of a checked ``experiment`` mapping."""
    from aicd.delivery.experiment_stats import Design

    return Design(
        metric=str(settings.get("metric", "accuracy")),
        effect=float(settings.get("effect") or 0.05),
        alpha=float(settings.get("alpha") or 0.05),
        power=float(settings.get("power") or 0.8),
        variants=len(settings.get("weights") or {"a": 1, "b": 1}),
        baseline=float(settings.get("baseline") or 0.5),
        sd=None if settings.get("sd") is None else float(settings["sd"]),
        test=str(settings.get("test", "welch")),
        goal=str(settings.get("goal", "maximize")),
        samples=settings.get("samples"),
    )


_RESERVED_HEADERS = frozenset(
    {"x-request-id", "x-aicd-variant", "connection", "transfer-encoding", "expect", "x-forwarded-for",
     "x-forwarded-proto", "host", "keep-alive", "te", "trailer", "upgrade", "proxy-connection",
     "cookie"}
)  # fmt: skip


def _steps(raw: Any, where: str, at: Callable[..., str], parent: Any) -> tuple[list[Step], list[str]]:
    if not isinstance(raw, list):
        return [], [f"{at(parent, 'steps')}: {where} must be a list of steps ({', '.join(STEP_KINDS)})"]
    steps: list[Step] = []
    errors: list[str] = []
    for index, item in enumerate(raw):
        here = f"{where}[{index}]"
        if not isinstance(item, Mapping) or len(item) != 1:
            errors.append(
                f"{at(raw, index)}: {here}: a step is one of `set_weight: 20`, `pause: 30s`, "
                "`pause: {}`, `analysis: {}` or `labels: 200`"
            )
            continue
        ((kind, value),) = item.items()
        if kind not in STEP_KINDS:
            errors.append(
                f"{at(item, kind)}: {here}: unknown step '{kind}'{did_you_mean(str(kind), STEP_KINDS)}; "
                f"known: {', '.join(STEP_KINDS)}"
            )
            continue
        try:
            if kind == "set_weight":
                steps.append(_weight_step(value, here))
            elif kind == "pause":
                if isinstance(value, Mapping):
                    duration = value.get("duration")
                    steps.append(Step("pause", duration=None if duration is None else _duration(duration)))
                elif value is None or value == "":
                    steps.append(Step("pause"))
                else:
                    steps.append(Step("pause", duration=_duration(value)))
            elif kind == "labels":
                steps.append(_labels_step(value, here))
            elif kind == "shadow":
                seconds = value.get("duration") if isinstance(value, Mapping) else value
                if seconds is None or seconds == "":
                    seconds = DEFAULT_SHADOW_DURATION
                steps.append(Step("shadow", duration=_duration(seconds)))
            else:
                steps.append(Step("analysis"))
        except ConfigError as exc:
            errors.append(f"{at(item, kind)}: {here}: {exc}")
    return steps, errors
