"""The service spec: how to run one revision of a service, from `aicd.yml`'s `service:` section.

    service:
      command: python app.py          # a shell command, or a list (argv, no shell)
      port_variable: PORT             # the variable that tells an instance its port
      health_path: /healthz           # GET must answer 200 when the instance is ready
      readiness_timeout: 30s          # seconds (a number) or "500ms" / "30s" / "2m"
      instances: 1
      env: {MODEL_PATH: model/model.joblib}
      stop_signal: SIGTERM            # then SIGKILL after stop_grace
      stop_grace: 10s
      liveness_interval: 5s           # health probes while running
      liveness_failures: 3            # consecutive failed probes -> unhealthy

Only `command` is required. Every error names the file, line and column,
the key, and what to write instead; all problems are reported at once.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aicd.delivery.config import CONFIG_FILE, DeliveryConfig, load_config
from aicd.errors import ConfigError
from aicd.suggest import did_you_mean

SERVICE_KEYS = (
    "name",
    "command",
    "port_variable",
    "health_path",
    "readiness_timeout",
    "instances",
    "env",
    "stop_signal",
    "stop_grace",
    "liveness_interval",
    "liveness_failures",
)
MAX_INSTANCES = 64
MAX_SECONDS = 24 * 3600.0
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*\Z")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


@dataclass(frozen=True)
class ServiceSpec:
    """How to run and check one instance of a service (validated on construction)."""

    command: str | tuple[str, ...]  # str: run by /bin/sh -c; tuple: argv
    port_variable: str = "PORT"
    health_path: str = "/healthz"
    readiness_timeout: float = 30.0
    instances: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    stop_signal: signal.Signals = signal.SIGTERM
    stop_grace: float = 10.0
    liveness_interval: float = 5.0
    liveness_failures: int = 3
    name: str = ""

    def __post_init__(self) -> None:
        problems = [f"service spec: {key}: {msg}" for key, msg in _problems(self)]
        if problems:
            raise ConfigError("\n".join(problems))

    @property
    def argv(self) -> list[str]:
        """The argv that starts one instance."""
        if isinstance(self.command, str):
            return ["/bin/sh", "-c", self.command]
        return list(self.command)

    @property
    def command_text(self) -> str:
        return self.command if isinstance(self.command, str) else " ".join(self.command)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "command": self.command if isinstance(self.command, str) else list(self.command),
            "port_variable": self.port_variable,
            "health_path": self.health_path,
            "readiness_timeout": self.readiness_timeout,
            "instances": self.instances,
            "env": dict(self.env),
            "stop_signal": self.stop_signal.name,
            "stop_grace": self.stop_grace,
            "liveness_interval": self.liveness_interval,
            "liveness_failures": self.liveness_failures,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServiceSpec:
        """The spec `to_json` wrote (the supervisor's state file); ConfigError if it is not one."""
        try:
            command = data["command"]
            return cls(
                command=command if isinstance(command, str) else tuple(command),
                port_variable=data["port_variable"],
                health_path=data["health_path"],
                readiness_timeout=float(data["readiness_timeout"]),
                instances=int(data["instances"]),
                env=dict(data["env"]),
                stop_signal=signal.Signals[data["stop_signal"]],
                stop_grace=float(data["stop_grace"]),
                liveness_interval=float(data["liveness_interval"]),
                liveness_failures=int(data["liveness_failures"]),
                name=str(data.get("name", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a service spec ({type(exc).__name__}: {exc})") from None


def load_service_spec(path: Path, display: str | None = None) -> ServiceSpec:
    """The service spec of the `aicd.yml` at `path`; ConfigError naming file:line:col."""
    return service_spec(load_config(path, display))


def service_spec(config: DeliveryConfig) -> ServiceSpec:
    """The service spec of a loaded `aicd.yml`; ConfigError naming file:line:col."""
    name = config.file or CONFIG_FILE
    if not config.service:
        raise ConfigError(
            f"{name}: no 'service:' section; add one to deploy, at least:\n"
            "service:\n  command: python app.py   # listens on 127.0.0.1:$PORT, answers GET /healthz"
        )
    return parse_service(config.service, name)


def parse_service(raw: Mapping[str, Any], file: str = CONFIG_FILE) -> ServiceSpec:
    """Check a `service:` mapping (a LocMap keeps line numbers) and build the spec."""
    errors: list[str] = []

    def at(key: str | None = None) -> str:
        mark_of: Callable[[str], object] | None = getattr(raw, "mark_of", None)
        mark = getattr(raw, "mark", None)
        if key is not None and mark_of is not None:
            return str(mark_of(key))
        return str(mark) if mark is not None else file

    for key in raw:
        if key not in SERVICE_KEYS:
            errors.append(
                f"{at(key)}: service: unknown key '{key}'{did_you_mean(str(key), SERVICE_KEYS)}; "
                f"known: {', '.join(SERVICE_KEYS)}"
            )
    values: dict[str, Any] = {}
    for key, convert in _CONVERTERS.items():
        if key not in raw:
            continue
        try:
            values[key] = convert(raw[key])
        except ValueError as exc:
            errors.append(f"{at(key)}: service.{key} {exc}")
    if "command" not in raw:
        errors.append(
            f"{at()}: service.command is required: the command that starts one instance, "
            "e.g. `command: python app.py` (it must listen on 127.0.0.1:$PORT)"
        )
    # Value checks for every key that converted (the others are reported above).
    unchecked = _Unchecked(**{"command": "true", **values})
    for key, msg in _problems(unchecked):
        if key in values:
            errors.append(f"{at(key)}: service.{key}: {msg}")
    if errors:
        raise ConfigError("\n".join(errors))
    return ServiceSpec(**values)


# --- conversions from YAML values (ValueError: the message after "service.<key>") ---


def _command(value: Any) -> str | tuple[str, ...]:
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must not be empty: write the command that starts one instance")
        return value
    if isinstance(value, list) and value and all(isinstance(v, (str, int, float)) for v in value):
        argv = tuple(str(v) for v in value)
        if not argv[0]:
            raise ValueError("must start with a program name")
        return argv
    raise ValueError(
        f"must be a command line (a string) or a non-empty list of strings (argv), not {_describe(value)}"
    )


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {_describe(value)}")
    return value


def _duration(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2)]
    raise ValueError(
        f'must be a duration: seconds (10) or "500ms", "10s", "2m", "1h"; not {_describe(value)}'
    )


def _count(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"must be a whole number, not {_describe(value)}")


def _env(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping of NAME: value, not {_describe(value)}")
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            out[str(key)] = "true" if item else "false"
        elif isinstance(item, (str, int, float)):
            out[str(key)] = str(item)
        else:
            raise ValueError(f"entry {key!r} must be a string or a number, not {_describe(item)}")
    return out


def _signal(value: Any) -> signal.Signals:
    if isinstance(value, str):
        name = value.strip().upper()
        name = name if name.startswith("SIG") else "SIG" + name
        if name in signal.Signals.__members__ and name not in ("SIGKILL", "SIGSTOP"):
            return signal.Signals[name]
    raise ValueError(f"must be a signal name such as SIGTERM, SIGINT or SIGQUIT, not {_describe(value)}")


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "name": _string,
    "command": _command,
    "port_variable": _string,
    "health_path": _string,
    "readiness_timeout": _duration,
    "instances": _count,
    "env": _env,
    "stop_signal": _signal,
    "stop_grace": _duration,
    "liveness_interval": _duration,
    "liveness_failures": _count,
}


@dataclass(frozen=True)
class _Unchecked:
    """ServiceSpec's fields without the check, to collect every problem of a YAML section."""

    command: str | tuple[str, ...]
    port_variable: str = "PORT"
    health_path: str = "/healthz"
    readiness_timeout: float = 30.0
    instances: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    stop_signal: signal.Signals = signal.SIGTERM
    stop_grace: float = 10.0
    liveness_interval: float = 5.0
    liveness_failures: int = 3
    name: str = ""


def _problems(spec: ServiceSpec | _Unchecked) -> list[tuple[str, str]]:
    """(key, what is wrong and what to do) for each problem of a spec."""
    out: list[tuple[str, str]] = []
    if isinstance(spec.command, str):
        if not spec.command.strip():
            out.append(("command", "must not be empty"))
    elif not spec.command or not spec.command[0]:
        out.append(("command", "must be a non-empty argv list starting with a program name"))
    if not _NAME.match(spec.port_variable):
        out.append(
            ("port_variable", f"{spec.port_variable!r} is not a variable name; use letters, digits, _ (PORT)")
        )
    if not spec.health_path.startswith("/") or any(c.isspace() for c in spec.health_path):
        out.append(
            ("health_path", f"{spec.health_path!r} must be a URL path starting with / (e.g. /healthz)")
        )
    for key in ("readiness_timeout", "liveness_interval"):
        seconds = getattr(spec, key)
        if not 0 < seconds <= MAX_SECONDS:
            out.append((key, f"must be more than 0 and at most 24h, not {seconds:g}s"))
    if not 0 <= spec.stop_grace <= MAX_SECONDS:
        out.append(("stop_grace", f"must be 0 to 24h, not {spec.stop_grace:g}s"))
    if not 1 <= spec.instances <= MAX_INSTANCES:
        out.append(("instances", f"must be from 1 to {MAX_INSTANCES}, not {spec.instances}"))
    if spec.liveness_failures < 1:
        out.append(("liveness_failures", f"must be 1 or more, not {spec.liveness_failures}"))
    for key in spec.env:
        if not _NAME.match(key):
            out.append(("env", f"{key!r} is not a variable name; use letters, digits and _"))
        elif key == spec.port_variable:
            out.append(("env", f"{key} is set by aicd to each instance's port; remove it from env"))
    if spec.stop_signal in (signal.SIGKILL, signal.SIGSTOP):
        out.append(("stop_signal", "must be a signal the service can handle (SIGTERM, SIGINT...)"))
    return out


def _describe(value: Any) -> str:
    from aicd.pipeline.nodes import describe

    return describe(value)
