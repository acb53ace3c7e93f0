"""Loading a trained model and its info.json (shared by evaluate.py and app.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DEFAULT_MODEL_PATH = Path("model") / "model.joblib"


class ModelError(Exception):
    """The model (or its info.json) is missing or unreadable; the message says what to do."""


def model_path_from_env(explicit: str | Path | None = None) -> Path:
    if explicit is not None:
        return Path(explicit)
    return Path(os.environ.get("MODEL_PATH") or DEFAULT_MODEL_PATH)


def load_model(path: Path) -> tuple[Any, dict[str, Any]]:
    """The fitted estimator at ``path`` and the info.json beside it ({} when there is none)."""
    import joblib  # type: ignore[import-untyped]

    if not path.is_file():
        raise ModelError(f"no model at {path}: run `python train.py` first (or set MODEL_PATH)")
    try:
        model = joblib.load(path)
    except Exception as exc:  # a truncated or foreign file: say which one
        raise ModelError(f"cannot load the model at {path}: {exc}") from exc
    info_file = path.parent / "info.json"
    info: dict[str, Any] = {}
    if info_file.is_file():
        try:
            loaded = json.loads(info_file.read_text())
        except json.JSONDecodeError as exc:
            raise ModelError(f"{info_file}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from exc
        if isinstance(loaded, dict):
            info = loaded
    return model, info
