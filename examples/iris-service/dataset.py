"""The data: scikit-learn's bundled iris set, split the same way by train.py, evaluate.py and the tests."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

SEED = 7
TEST_SIZE = 0.3
FEATURES = ("sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm")


@dataclass(frozen=True)
class Split:
    x_train: NDArray[np.float64]
    x_test: NDArray[np.float64]
    y_train: NDArray[np.int64]
    y_test: NDArray[np.int64]
    target_names: tuple[str, ...]


def load_split(seed: int = SEED, test_size: float = TEST_SIZE) -> Split:
    """The iris data, stratified into a training part and a held-out test part (fixed seed)."""
    from sklearn.datasets import load_iris  # type: ignore[import-untyped]
    from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]

    iris = load_iris()
    x = np.asarray(iris.data, dtype=np.float64)
    y = np.asarray(iris.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y
    )
    return Split(
        x_train=np.asarray(x_train, dtype=np.float64),
        x_test=np.asarray(x_test, dtype=np.float64),
        y_train=np.asarray(y_train, dtype=np.int64),
        y_test=np.asarray(y_test, dtype=np.int64),
        target_names=tuple(str(n) for n in iris.target_names),
    )


def data_hash(x: NDArray[np.float64], y: NDArray[np.int64]) -> str:
    """sha256 over the arrays' shapes, dtypes and bytes: names exactly the data a model was trained on."""
    h = hashlib.sha256()
    for arr in (x, y):
        a = np.ascontiguousarray(arr)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return "sha256:" + h.hexdigest()
