from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from app import create_app
from train import train


@pytest.fixture(scope="session")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model")
    train(out, worse=False)
    return out / "model.joblib"


@pytest.fixture(scope="session")
def worse_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("worse-model")
    train(out, worse=True)
    return out / "model.joblib"


@pytest.fixture()
def client(model_file: Path) -> Iterator[FlaskClient]:
    app = create_app(model_file)
    app.config["TESTING"] = True
    with app.test_client() as c:
        yield c
