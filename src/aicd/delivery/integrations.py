"""aicd's judge in other people's rollouts: Argo Rollouts' ``web`` metric provider and Flagger's webhooks.

Both contracts come down to one judgement (:func:`aicd.delivery.judge_run.judge_samples`) of a
baseline and a canary sample set, the same as `aicd judge` gives for two sample files:

- Argo Rollouts (``provider: web``, ``method: POST``) sends a JSON body that names the samples
  and reads the answer with ``jsonPath``: :func:`argo_answer` is that answer, always HTTP 200 for
  a judgement (``{$.verdict}``, ``{$.score}``, ``{$.classification.<metric>}``) so that the
  ``successCondition`` decides; bad input is a 4xx, which Argo counts as a measurement error.
- Flagger calls a webhook with ``{"name", "namespace", "phase", "checksum", "metadata": {...}}``
  (metadata: strings only) and reads only the status: 2xx goes on, anything else halts.
  :func:`flagger_decision` says which, per hook type. A ``rollback`` hook is the other way round:
  2xx makes Flagger roll back, so it answers 2xx only when the judgement fails.

The server (:mod:`aicd.server.routes.integrations`) does the HTTP and the tokens.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aicd.delivery.judge_config import AnalysisConfig, analysis_config
from aicd.delivery.judge_json import number
from aicd.delivery.judge_run import Judgement, judge_samples, merge_metrics
from aicd.delivery.samples import JSON_EXAMPLE, Samples, SamplesFileError, samples_from_doc
from aicd.errors import ConfigError

CONFIRM_ROLLOUT = "confirm-rollout"
PRE_ROLLOUT = "pre-rollout"
ROLLOUT = "rollout"
CONFIRM_PROMOTION = "confirm-promotion"
POST_ROLLOUT = "post-rollout"
ROLLBACK = "rollback"
FLAGGER_HOOKS = (CONFIRM_ROLLOUT, PRE_ROLLOUT, ROLLOUT, CONFIRM_PROMOTION, POST_ROLLOUT, ROLLBACK)
# Hooks that go on when there is nothing to judge yet (gates before traffic, and the notice after).
GO_WITHOUT_SAMPLES = (CONFIRM_ROLLOUT, PRE_ROLLOUT, POST_ROLLOUT)
MAX_METRIC_SPECS = 100
MAX_VALUES = 200_000  # sample values per side of one request (the judge's time grows with them)


@dataclass(frozen=True)
class JudgeRequest:
    """What to judge: two sample sets and how (metric specs as `aicd judge --metric`, an analysis section)."""

    baseline: Samples
    canary: Samples
    metric_specs: tuple[str, ...] = ()
    analysis: AnalysisConfig | None = None
    pass_threshold: float | None = None
    marginal_threshold: float | None = None

    def judge(self) -> Judgement:
        analysis = self.analysis or AnalysisConfig()
        metrics, weights = merge_metrics(
            analysis.judge.metrics, dict(analysis.metric_weights), self.metric_specs
        )
        return judge_samples(
            analysis,
            self.baseline,
            self.canary,
            metrics=metrics,
            weights=weights,
            pass_threshold=self.pass_threshold,
            marginal_threshold=self.marginal_threshold,
        )


def parse_samples(doc: Any, where: str) -> Samples:
    """One sample set from a request: ``{"latency_ms": [...], "predictions": {...}}`` as in a sample file."""
    try:
        samples = samples_from_doc(doc, where)
    except SamplesFileError as exc:
        raise ConfigError(str(exc)) from None
    if not samples.metrics and not samples.predictions:
        raise ConfigError(f"{where}: holds no samples; send e.g. {JSON_EXAMPLE}")
    values = sum(len(v) for v in samples.metrics.values())
    if values > MAX_VALUES:
        raise ConfigError(
            f"{where}: {values} sample values; at most {MAX_VALUES} per side, send a sample of them"
        )
    return samples


def parse_analysis(doc: Any, where: str) -> AnalysisConfig | None:
    if doc is None:
        return None
    if not isinstance(doc, Mapping):
        raise ConfigError(f'{where}: an object like aicd.yml\'s analysis: section, e.g. {{"metrics": [...]}}')
    return analysis_config(doc, where)


def parse_metric_specs(value: Any, where: str) -> tuple[str, ...]:
    """Metric specs: a list of strings, or (in Flagger's metadata) a JSON or space-separated string."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f'{where}: not valid JSON ({exc.msg}); send e.g. ["latency_ms:increase"]'
                ) from None
        else:
            value = text.split()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f'{where}: a list of metric specs, e.g. ["latency_ms:increase", "error:increase"]')
    if len(value) > MAX_METRIC_SPECS:
        raise ConfigError(f"{where}: {len(value)} metric specs; at most {MAX_METRIC_SPECS}")
    return tuple(value)


def _threshold(value: Any, where: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{where}: a score from 0 to 100, not {value[:40]!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        raise ConfigError(f"{where}: a score from 0 to 100")
    return float(value)


def judge_request(doc: Mapping[str, Any], where: str = "body") -> JudgeRequest:
    """A JudgeRequest from a request body: baseline, canary, metrics, analysis, pass/marginal_threshold."""
    missing = [key for key in ("baseline", "canary") if key not in doc or doc[key] is None]
    if missing:
        raise ConfigError(
            f"{where}: {' and '.join(missing)} missing; send the two sample sets, e.g. "
            f'{{"baseline": {JSON_EXAMPLE}, "canary": {JSON_EXAMPLE}}}'
        )
    return JudgeRequest(
        baseline=parse_samples(doc["baseline"], f"{where}.baseline"),
        canary=parse_samples(doc["canary"], f"{where}.canary"),
        metric_specs=parse_metric_specs(doc.get("metrics"), f"{where}.metrics"),
        analysis=parse_analysis(doc.get("analysis"), f"{where}.analysis"),
        pass_threshold=_threshold(doc.get("pass_threshold"), f"{where}.pass_threshold"),
        marginal_threshold=_threshold(doc.get("marginal_threshold"), f"{where}.marginal_threshold"),
    )


def argo_answer(judgement: Judgement) -> dict[str, Any]:
    """The JSON Argo Rollouts reads with jsonPath: the judge's report plus ``classification`` by metric."""
    payload = dict(judgement.payload)
    payload["score"] = number(judgement.result.score)
    payload["classification"] = {m.name: m.classification for m in judgement.result.metrics}
    for key in ("stable_file", "canary_file"):
        payload.pop(key, None)
    return payload


def _json_metadata(metadata: Mapping[str, str], key: str) -> Any:
    text = metadata.get(key)
    if text is None or text == "":
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"metadata.{key}: not valid JSON ({exc.msg} at column {exc.colno}); Flagger's metadata values "
            f"are strings, so the samples go in as a JSON string, e.g. '{JSON_EXAMPLE}'"
        ) from None


def flagger_request(metadata: Mapping[str, str], configured: Mapping[str, Any] | None) -> JudgeRequest | None:
    """What a Flagger hook asks to judge: samples named in its metadata (``baseline``/``canary`` as JSON
    strings, ``metrics``, ``analysis``, ``pass_threshold``, ``marginal_threshold``), else the ones configured
    for the canary (a body as :func:`judge_request` reads); None when there is nothing to judge."""
    doc: dict[str, Any] = dict(configured or {})
    for key in ("baseline", "canary", "analysis"):
        value = _json_metadata(metadata, key)
        if value is not None:
            doc[key] = value
    for key in ("metrics", "pass_threshold", "marginal_threshold"):
        if metadata.get(key):
            doc[key] = metadata[key]
    if doc.get("baseline") is None and doc.get("canary") is None:
        return None
    return judge_request(doc, "metadata" if configured is None else "the canary's configuration")


@dataclass(frozen=True)
class HookDecision:
    go: bool  # answer 2xx
    message: str
    judgement: Judgement | None = None

    def to_json(self, hook: str) -> dict[str, Any]:
        out: dict[str, Any] = {"hook": hook, "go": self.go, "message": self.message}
        if self.judgement is not None:
            out.update(argo_answer(self.judgement))
        return out


def flagger_decision(hook: str, request: JudgeRequest | None) -> HookDecision:
    """Whether Flagger should get a 2xx for ``hook`` (see the module docstring)."""
    if hook not in FLAGGER_HOOKS:
        raise ConfigError(f"{hook!r} is not a Flagger webhook type; use one of {', '.join(FLAGGER_HOOKS)}")
    if hook == POST_ROLLOUT:
        return HookDecision(True, "noted")
    if request is None:
        if hook == ROLLBACK:
            return HookDecision(False, "nothing to judge: no rollback")
        if hook in GO_WITHOUT_SAMPLES:
            return HookDecision(True, "nothing to judge yet: go on")
        return HookDecision(
            False,
            "nothing to judge: name the samples in the webhook's metadata (baseline, canary) or configure "
            "them for this canary; halting",
        )
    judgement = request.judge()
    summary = f"{judgement.verdict} (score {judgement.result.score:.4g}): {judgement.reason}"
    if hook == ROLLBACK:
        if judgement.verdict == "fail":
            return HookDecision(True, f"roll back: {summary}", judgement)
        return HookDecision(False, f"no rollback: {summary}", judgement)
    if judgement.passed:
        return HookDecision(True, f"go on: {summary}", judgement)
    return HookDecision(False, f"halt: {summary}", judgement)


__all__ = [
    "FLAGGER_HOOKS",
    "HookDecision",
    "JudgeRequest",
    "argo_answer",
    "flagger_decision",
    "flagger_request",
    "judge_request",
]
