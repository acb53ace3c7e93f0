"""The `analysis:` section: reading it from aicd.yml or a judge.yml, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from aicd.delivery.config import load_config
from aicd.delivery.judge import EffectSize, JudgeConfig, MetricConfig
from aicd.delivery.judge_config import load_analysis, with_weights
from aicd.errors import ConfigError

FULL = """\
gates:
  - {metric: accuracy, min: 0.9}
analysis:
  pass_threshold: 90
  marginal_threshold: 60
  groups: {latency: 70}
  metrics:
    - name: p99_ms
      group: latency
      direction: increase
      critical: true
      effect_size: {allowed_increase: 1.1, critical_increase: 1.5}
    - name: error
      direction: increase
      must_have_data: true
      nan_strategy: replace
      min_samples: 100
      effect_size: {measure: cles, allowed_increase: 0.6}
    - name: cpu
      weight: 10
      outliers: remove
      outlier_factor: 2.5
  drift: {psi_significant: 0.3, bins: 20}
  thresholds:
    - {name: success_rate, interval: 10s, count: 6, success_condition: "result >= 0.99", failure_limit: 1}
"""


def test_full_section_in_aicd_yml(tmp_path: Path) -> None:
    (tmp_path / "aicd.yml").write_text(FULL)
    config = load_analysis(tmp_path / "aicd.yml", "aicd.yml", required=True)
    assert config is not None
    judge = config.judge
    assert (judge.pass_threshold, judge.marginal_threshold) == (90, 60)
    p99, error, cpu = judge.metrics
    assert p99 == MetricConfig(
        "p99_ms",
        "increase",
        "latency",
        critical=True,
        effect=EffectSize(allowed_increase=1.1, critical_increase=1.5),
    )
    assert error.must_have_data and error.nan_strategy == "replace" and error.min_samples == 100
    assert error.effect == EffectSize(measure="cles", allowed_increase=0.6)
    assert (cpu.outliers, cpu.outlier_factor, cpu.direction) == ("remove", 2.5, "either")
    assert config.metric_weights == {"cpu": 10}
    assert (
        config.drift.psi_significant == 0.3 and config.drift.bins == 20 and config.drift.psi_moderate == 0.1
    )
    (spec,) = config.thresholds
    assert (spec.name, spec.interval, spec.count, spec.failure_limit) == ("success_rate", 10.0, 6, 1)
    weighted = with_weights(judge, config.metric_weights, "aicd.yml")
    assert weighted.group_weights == {"latency": 70, "cpu": 10}
    # `aicd gate` reads the same file and keeps working with the analysis section in it
    assert [g.metric for g in load_config(tmp_path / "aicd.yml", "aicd.yml").gates] == ["accuracy"]


def test_judge_yml_is_the_section_itself(tmp_path: Path) -> None:
    (tmp_path / "judge.yml").write_text("metrics:\n  - {name: latency_ms, direction: increase}\n")
    config = load_analysis(tmp_path / "judge.yml", "judge.yml", required=True)
    assert config is not None and config.judge.metrics == (MetricConfig("latency_ms", "increase"),)


def test_no_section(tmp_path: Path) -> None:
    (tmp_path / "aicd.yml").write_text("gates: []\n")
    assert load_analysis(tmp_path / "aicd.yml", "aicd.yml", required=False) is None
    with pytest.raises(ConfigError, match=r"aicd\.yml: no 'analysis:' section; add one"):
        load_analysis(tmp_path / "aicd.yml", "aicd.yml", required=True)
    with pytest.raises(ConfigError, match=r"nope\.yml: no such config file"):
        load_analysis(tmp_path / "nope.yml", "nope.yml", required=True)
    (tmp_path / "list.yml").write_text("- a\n")
    with pytest.raises(ConfigError, match=r"list\.yml:1:1: the top level must be a mapping"):
        load_analysis(tmp_path / "list.yml", "list.yml", required=True)


def test_every_problem_with_file_line_column(tmp_path: Path) -> None:
    (tmp_path / "aicd.yml").write_text(
        "analysis:\n"
        "  pass_treshold: 90\n"
        "  marginal_threshold: 101\n"
        "  metrics:\n"
        "    - name: lat\n"
        "      direction: up\n"
        "      effect_size: {allowed_increase: 0.9, measure: mean}\n"
        "    - {name: lat}\n"
        "    - {direction: increase}\n"
        "    - {name: err, critical: yes please, min_samples: 0}\n"
        "  drift: {bins: 1}\n"
        "  thresholds:\n"
        "    - {name: rate, success_condition: 'result >> 1'}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_analysis(tmp_path / "aicd.yml", "aicd.yml", required=True)
    lines = str(err.value).splitlines()
    expected = [
        "aicd.yml:2:3: analysis: unknown key 'pass_treshold' (did you mean \"pass_threshold\"?)",
        "aicd.yml:3:3: analysis.marginal_threshold must be a score from 0 to 100 (is 101)",
        "aicd.yml:6:7: analysis.metrics[0].direction must be one of increase, decrease, either (is 'up')",
        "aicd.yml:7:44: analysis.metrics[0].effect_size.measure must be one of mean_ratio, median_ratio,",
        "aicd.yml:7:21: analysis.metrics[0].effect_size.allowed_increase must be at least 1 (no change)",
        "aicd.yml:8:7: analysis.metrics[1]: the metric 'lat' is configured twice",
        "aicd.yml:9:7: analysis.metrics[2]: 'name' (the metric's name in the sample files) is required",
        "aicd.yml:10:19: analysis.metrics[3].critical must be true or false (is 'yes please')",
        "aicd.yml:10:41: analysis.metrics[3].min_samples must be a whole number, 1 or more",
        "aicd.yml:11:11: analysis.drift.bins must be a whole number, 2 or more",
        "aicd.yml:13:7: analysis.thresholds[0].success_condition: cannot read the condition 'result >> 1'",
    ]
    for want in expected:
        assert any(line.startswith(want) for line in lines), (want, lines)


def test_group_weights_are_checked() -> None:
    config = JudgeConfig(metrics=(MetricConfig("p50", group="latency"), MetricConfig("p99", group="latency")))
    assert with_weights(config, {"p50": 60}, "f").group_weights == {"latency": 60}
    with pytest.raises(ConfigError, match="the group 'latency' has two weights"):
        with_weights(config, {"p50": 60, "p99": 50}, "f")
    with pytest.raises(ConfigError, match="the group 'latncy' has a weight but no metric is in it"):
        with_weights(JudgeConfig(metrics=config.metrics, group_weights={"latncy": 5}), {}, "f")
    both = JudgeConfig(metrics=(*config.metrics, MetricConfig("err")), group_weights={"latency": 100})
    with pytest.raises(ConfigError, match="add up to 100, leaving nothing of 100 for err"):
        with_weights(both, {}, "f")
