"""Pipeline variables given by the user: flags, files and the environment.

- `KEY=VALUE` (from --variable): a plain pipeline variable.
- `--secret KEY=VALUE` or `--secret KEY` (value from the environment): masked.
- A variables file, YAML (`KEY: value` or `KEY: {value: ..., masked: true,
  file: true, expand: false}`) or dotenv (`KEY=VALUE` lines).
Pipeline variables have the highest precedence of all (GitLab's "pipeline
variables"). A value given twice: the last one wins.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable
from pathlib import Path

from aicd.errors import ConfigError
from aicd.executors.reports import parse_dotenv
from aicd.pipeline.ir import Variable

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_key(key: str, where: str) -> str:
    if not _KEY.match(key):
        raise ConfigError(
            f"{where}: {key!r} is not a valid variable name "
            "(letters, digits and _, not starting with a digit)"
        )
    return key


def parse_assignment(text: str, where: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise ConfigError(f"{where}: expected KEY=VALUE, got {text!r}")
    return _check_key(key.strip(), where), value


def _from_yaml(path: Path, data: object) -> list[Variable]:
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a variables file must be a mapping of KEY: value")
    out = []
    for key, spec in data.items():
        key = _check_key(str(key), str(path))
        if isinstance(spec, dict):
            unknown = set(spec) - {"value", "masked", "file", "expand", "description"}
            if unknown:
                raise ConfigError(
                    f"{path}: variable {key}: unknown field(s) {', '.join(sorted(map(str, unknown)))} "
                    "(allowed: value, masked, file, expand, description)"
                )
            value = spec.get("value", "")
            out.append(
                Variable(
                    key=key,
                    value="" if value is None else str(value),
                    masked=bool(spec.get("masked", False)),
                    file=bool(spec.get("file", False)),
                    expand=bool(spec.get("expand", True)),
                )
            )
        elif isinstance(spec, (str, int, float, bool)) or spec is None:
            value = "" if spec is None else (str(spec).lower() if isinstance(spec, bool) else str(spec))
            out.append(Variable(key=key, value=value))
        else:
            raise ConfigError(f"{path}: variable {key}: value must be a string or a mapping with 'value'")
    return out


def _from_dotenv(path: Path, text: str) -> list[Variable]:
    """`KEY=VALUE` lines, read as dotenv reports are; a bad line is an error here."""
    variables, warnings = parse_dotenv(text, str(path))
    bad = [w.removeprefix("WARNING: ").removesuffix("; ignored") for w in warnings if "not a KEY=VALUE" in w]
    if bad:
        raise ConfigError("\n".join(bad))
    return [dataclasses.replace(v, expand=True) for v in variables]


def read_variables_file(path: Path) -> list[Variable]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: variables file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read variables file: {exc}") from None
    if path.suffix in (".yml", ".yaml"):
        from aicd.pipeline.yaml_lib import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
            raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
        return _from_yaml(path, data)
    return _from_dotenv(path, text)


def _check_maskable(var: Variable, where: str) -> Variable:
    if var.masked and not var.file and ("\n" in var.value or "\r" in var.value):
        raise ConfigError(
            f"{where}: variable {var.key} is masked but its value has several lines; output is masked "
            "line by line, so it could leak: store it as a file variable (file: true) or unmask it"
        )
    return var


def parse_pipeline_variables(
    assignments: Iterable[str],
    secrets: Iterable[str],
    files: Iterable[str],
    project_dir: Path,
) -> tuple[Variable, ...]:
    """Files first, then --variable, then --secret: later wins."""
    found: dict[str, Variable] = {}
    for name in files:
        path = Path(name)
        if not path.is_absolute():
            path = project_dir / path
        for var in read_variables_file(path):
            found[var.key] = _check_maskable(var, str(path))
    for text in assignments:
        key, value = parse_assignment(text, "--variable")
        found[key] = Variable(key=key, value=value)
    for text in secrets:
        if "=" in text:
            key, value = parse_assignment(text, "--secret")
        else:
            key = _check_key(text, "--secret")
            if key not in os.environ:
                raise ConfigError(f"--secret {key}: no environment variable {key} to read the value from")
            value = os.environ[key]
        found[key] = _check_maskable(Variable(key=key, value=value, masked=True), "--secret")
    return tuple(found.values())
