"""The router in front of the real iris service (examples/iris-service, Flask), counting predictions."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from aicd.deploy.router.metrics import FieldCount
from aicd.deploy.router.router import Router

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "iris-service"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.8, 2.2], [5.9, 3.0, 4.2, 1.5], [4.9, 3.0, 1.4, 0.2]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_predictions_of_the_iris_service_are_relayed_and_counted(tmp_path: Path) -> None:
    pytest.importorskip("sklearn", reason="the iris example needs scikit-learn: pip install -e '.[examples]'")
    pytest.importorskip("flask", reason="the iris example needs flask: pip install -e '.[examples]'")
    train = [sys.executable, "train.py", "--out", str(tmp_path / "model")]
    subprocess.run(train, cwd=EXAMPLE, check=True, capture_output=True)
    port = free_port()
    env = {**os.environ, "MODEL_PATH": str(tmp_path / "model" / "model.joblib"), "PORT": str(port)}
    app = subprocess.Popen(
        [sys.executable, "app.py"], cwd=EXAMPLE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and app.poll() is None, "the iris service did not start"
            time.sleep(0.05)

        async def main() -> None:
            async with Router(field_count=FieldCount("/predict", "predictions")) as router:
                router.set_backends({"v1": [("127.0.0.1", port)]})
                expected: Counter[str] = Counter()
                async with httpx.AsyncClient(base_url=router.url) as client:
                    for i in range(20):
                        rows = ROWS[: 1 + i % len(ROWS)]
                        r = await client.post("/predict", json={"features": rows})
                        assert r.status_code == 200, r.text
                        expected.update(str(p) for p in r.json()["predictions"])
                    bad = await client.post("/predict", json={"features": [1, 2]})
                    health = await client.get("/healthz")
                assert bad.status_code == 400 and "expected 4 numbers" in bad.json()["error"]
                assert health.json()["status"] == "ok"
                m = router.snapshot()["revisions"]["v1"]
                assert m["field_values"] == dict(expected) and set(expected) == {"0", "1", "2"}
                assert m["status"] == {"200": 21, "400": 1} and m["errors"] == 0

        asyncio.run(main())
    finally:
        app.terminate()
        app.wait(timeout=10)
