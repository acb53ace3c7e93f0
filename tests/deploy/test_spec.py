"""The service spec from aicd.yml `service:`: values, defaults, located errors for every mistake."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from aicd.deploy.spec import ServiceSpec, load_service_spec, parse_service
from aicd.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "iris-service"


def write(tmp: Path, text: str) -> Path:
    path = tmp / "aicd.yml"
    path.write_text(text)
    return path


def test_full_service_section(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
model: {name: iris}
service:
  name: iris
  command: [python, app.py]
  port_variable: HTTP_PORT
  health_path: /healthz?deep=1
  readiness_timeout: 2m
  instances: 3
  env: {MODEL_PATH: model/model.joblib, WORKERS: 2, DEBUG: false}
  stop_signal: int
  stop_grace: 500ms
  liveness_interval: 1.5
  liveness_failures: 4
""",
    )
    spec = load_service_spec(path, "aicd.yml")
    assert spec == ServiceSpec(
        command=("python", "app.py"),
        port_variable="HTTP_PORT",
        health_path="/healthz?deep=1",
        readiness_timeout=120.0,
        instances=3,
        env={"MODEL_PATH": "model/model.joblib", "WORKERS": "2", "DEBUG": "false"},
        stop_signal=signal.SIGINT,
        stop_grace=0.5,
        liveness_interval=1.5,
        liveness_failures=4,
        name="iris",
    )
    assert spec.argv == ["python", "app.py"]
    assert ServiceSpec.from_json(spec.to_json()) == spec


def test_only_a_command_gives_the_defaults(tmp_path: Path) -> None:
    spec = load_service_spec(write(tmp_path, "service:\n  command: python app.py --quiet\n"))
    assert spec.argv == ["/bin/sh", "-c", "python app.py --quiet"]
    assert (spec.port_variable, spec.health_path, spec.readiness_timeout, spec.instances) == (
        "PORT",
        "/healthz",
        30.0,
        1,
    )
    assert (spec.stop_signal, spec.stop_grace, spec.env) == (signal.SIGTERM, 10.0, {})


def test_the_iris_example_with_a_service_section(tmp_path: Path) -> None:
    text = (EXAMPLE / "aicd.yml").read_text()
    text += f"service:\n  command: [{sys.executable}, app.py]\n  readiness_timeout: 20s\n"
    spec = load_service_spec(write(tmp_path, text), "aicd.yml")
    assert spec.command == (sys.executable, "app.py") and spec.readiness_timeout == 20.0


def test_every_mistake_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
service:
  command: ""
  port_variable: 1PORT
  helth_path: /healthz
  readiness_timeout: soon
  instances: two
  env: {PORT: "8000", ok: [1]}
  stop_signal: SIGKILL
  liveness_failures: 1.5
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_service_spec(path, "aicd.yml")
    lines = str(caught.value).splitlines()
    assert lines == [
        "aicd.yml:4:3: service: unknown key 'helth_path' (did you mean \"health_path\"?); known: name, "
        "command, port_variable, health_path, readiness_timeout, instances, env, stop_signal, stop_grace, "
        "liveness_interval, liveness_failures",
        "aicd.yml:2:3: service.command must not be empty: write the command that starts one instance",
        'aicd.yml:5:3: service.readiness_timeout must be a duration: seconds (10) or "500ms", "10s", '
        '"2m", "1h"; not a string (\'soon\')',
        "aicd.yml:6:3: service.instances must be a whole number, not a string ('two')",
        "aicd.yml:7:3: service.env entry 'ok' must be a string or a number, not a list",
        "aicd.yml:8:3: service.stop_signal must be a signal name such as SIGTERM, SIGINT or SIGQUIT, "
        "not a string ('SIGKILL')",
        "aicd.yml:9:3: service.liveness_failures must be a whole number, not a number (1.5)",
        "aicd.yml:3:3: service.port_variable: '1PORT' is not a variable name; use letters, digits, _ (PORT)",
    ]


def test_value_checks_are_located(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
service:
  command: [python, app.py]
  port_variable: 1PORT
  health_path: healthz
  instances: 0
  readiness_timeout: 0
  env:
    PORT: 80
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_service_spec(path, "aicd.yml")
    assert str(caught.value).splitlines() == [
        "aicd.yml:3:3: service.port_variable: '1PORT' is not a variable name; use letters, digits, _ (PORT)",
        "aicd.yml:4:3: service.health_path: 'healthz' must be a URL path starting with / (e.g. /healthz)",
        "aicd.yml:6:3: service.readiness_timeout: must be more than 0 and at most 24h, not 0s",
        "aicd.yml:5:3: service.instances: must be from 1 to 64, not 0",
    ]
    # PORT in env is reported once the port variable is valid
    path.write_text("service:\n  command: x\n  env:\n    PORT: 80\n")
    with pytest.raises(
        ConfigError, match=r"^aicd.yml:3:3: service.env: PORT is set by aicd to each instance"
    ):
        load_service_spec(path, "aicd.yml")


def test_missing_command_and_missing_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^aicd.yml:2:3: service.command is required: the command that"):
        load_service_spec(write(tmp_path, "service:\n  instances: 2\n"), "aicd.yml")
    with pytest.raises(ConfigError, match=r"^aicd.yml: no 'service:' section; add one to deploy"):
        load_service_spec(write(tmp_path, "gates: []\n"), "aicd.yml")
    with pytest.raises(ConfigError, match=r"^aicd.yml:1:1: 'service' must be a mapping"):
        load_service_spec(write(tmp_path, "service: python app.py\n"), "aicd.yml")
    with pytest.raises(ConfigError, match="no such config file"):
        load_service_spec(tmp_path / "nope.yml", "nope.yml")


def test_spec_built_in_code_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"service spec: command: must not be empty"):
        ServiceSpec(command=" ")
    with pytest.raises(ConfigError, match=r"service spec: instances: must be from 1 to 64, not 100"):
        ServiceSpec(command="x", instances=100)
    with pytest.raises(ConfigError, match="stop_signal: must be a signal the service can handle"):
        ServiceSpec(command="x", stop_signal=signal.SIGKILL)
    with pytest.raises(ConfigError, match="not a service spec"):
        ServiceSpec.from_json({"command": "x"})
    assert parse_service({"command": "x"}).command == "x"  # a plain mapping (no line numbers) works too
