"""Train the iris classifier and write model/model.joblib plus model/info.json.

    python train.py [--out model] [--worse]

The knob: ``--worse`` or the environment variable ``IRIS_WORSE_MODEL=1`` trains a
deliberately worse model (it sees only the sepal width), for tests and demos of
the quality gate.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]
import sklearn  # type: ignore[import-untyped]
from sklearn.compose import ColumnTransformer  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.pipeline import Pipeline  # type: ignore[import-untyped]
from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

from dataset import FEATURES, SEED, TEST_SIZE, data_hash, load_split

WORSE_ENV = "IRIS_WORSE_MODEL"
WORSE_FEATURE = 1  # sepal width: on its own it barely separates the three species
C = 1.0
MAX_ITER = 1000


def worse_from_env(environ: dict[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get(WORSE_ENV, "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def build_model(worse: bool) -> Pipeline:
    steps: list[tuple[str, Any]] = []
    if worse:
        steps.append(("select", ColumnTransformer([("keep", "passthrough", [WORSE_FEATURE])])))
    steps.append(("scale", StandardScaler()))
    steps.append(("classify", LogisticRegression(C=C, max_iter=MAX_ITER, random_state=SEED)))
    return Pipeline(steps)


def train(out_dir: Path, worse: bool = False) -> dict[str, Any]:
    """Fit the model on the training split, save it in ``out_dir``; returns what info.json holds."""
    split = load_split()
    model = build_model(worse)
    model.fit(split.x_train, split.y_train)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_file = out_dir / "model.joblib"
    joblib.dump(model, model_file)
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    info: dict[str, Any] = {
        "model_version": digest[:12],
        "model_sha256": digest,
        "variant": "worse" if worse else "standard",
        "algorithm": "StandardScaler + LogisticRegression",
        "params": {
            "C": C,
            "max_iter": MAX_ITER,
            "features": [FEATURES[WORSE_FEATURE]] if worse else list(FEATURES),
        },
        "data": {
            "dataset": "sklearn.datasets.load_iris",
            "train_sha256": data_hash(split.x_train, split.y_train),
            "n_train": int(split.x_train.shape[0]),
            "n_test": int(split.x_test.shape[0]),
            "seed": SEED,
            "test_size": TEST_SIZE,
        },
        "feature_names": list(FEATURES),
        "target_names": list(split.target_names),
        "sklearn_version": sklearn.__version__,
    }
    (out_dir / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("model"), help="output folder (default: model)")
    parser.add_argument(
        "--worse", action="store_true", help=f"train a deliberately worse model (also: {WORSE_ENV}=1)"
    )
    args = parser.parse_args(argv)
    worse = bool(args.worse) or worse_from_env()
    info = train(args.out, worse=worse)
    print(
        f"trained {info['variant']} model {info['model_version']} on {info['data']['n_train']} rows "
        f"({info['data']['train_sha256']}) -> {args.out / 'model.joblib'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
