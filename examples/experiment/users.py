"""Keyed users for the A/B example: iris rows with an X-User header, labels posted back.

    python users.py http://127.0.0.1:PORT --seconds 60

Each of 50 users sends rows (the iris data set, in random order) with its own ``X-User`` key;
every answer's variant (``X-Aicd-Variant``) is counted per user, and the row's true class is
posted to ``/_aicd/feedback`` by the answer's ``X-Request-Id``. At the end: how many users saw
more than one variant (0 while the experiment runs) and the labels joined.
"""

from __future__ import annotations

import argparse
import random
import time

import httpx
from sklearn.datasets import load_iris  # type: ignore[import-untyped]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--users", type=int, default=50)
    args = parser.parse_args()
    data = load_iris()
    rows = [([float(v) for v in row], int(y)) for row, y in zip(data.data, data.target, strict=True)]
    rng = random.Random(1)
    seen: dict[str, set[str]] = {}
    labels: list[dict[str, object]] = []
    joined = 0
    deadline = time.monotonic() + args.seconds
    with httpx.Client(base_url=args.url, timeout=30) as client:
        while time.monotonic() < deadline:
            user = f"user-{rng.randrange(args.users)}"
            row, truth = rng.choice(rows)
            answer = client.post("/predict", json={"features": [row]}, headers={"X-User": user})
            variant = answer.headers.get("x-aicd-variant")
            if variant:
                seen.setdefault(user, set()).add(variant)
            labels.append({"request_id": answer.headers["x-request-id"], "label": truth})
            if len(labels) >= 25:
                joined += client.post("/_aicd/feedback", json={"labels": labels}).json()["joined"]
                labels = []
    mixed = sum(1 for variants in seen.values() if len(variants) > 1)
    split = {v: sum(1 for s in seen.values() if s == {v}) for v in sorted(set().union(*seen.values()))}
    print(f"{len(seen)} users by variant {split}; {mixed} saw more than one; {joined} labels joined")


if __name__ == "__main__":
    main()
