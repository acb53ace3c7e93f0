"""Page render times of the web UI on a store of 1,000 pipelines and 20,000 jobs.

The server's real app in-process (its lifespan: migrations, dispatcher), SQLite, one project
whose store holds `--pipelines` finished pipelines of `--jobs-per` jobs each (plus one of 200
jobs for the graph), a model with versions and an environment with deployments and a judged
canary. Each page is fetched `--repeat` times through the app (server time: routing, role
checks, queries, templates; no network) after one warm-up; the table gives median and p95.
Then the same home as `aicd ui` serves it (the local app: launch key, Host check), with a local
project (as `aicd run` records one) of as many pipelines and jobs: its pages beside the server's.

    python benchmarks/ui.py                       # 1,000 pipelines x 20 jobs, 15 fetches a page
    python benchmarks/ui.py --quick               # 50 x 20, 3 fetches (smoke test)
    python benchmarks/ui.py --output benchmarks/results/ui.md
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "web"))  # the tests' seeding helpers

from web_seed import seed_environment, seed_models  # noqa: E402

from aicd.server.app import create_app  # noqa: E402
from aicd.server.settings import ServerSettings  # noqa: E402
from aicd.store.records import NewJob  # noqa: E402
from aicd.store.repository import RunStore  # noqa: E402
from aicd.web.local import OPEN_PATH, new_launch  # noqa: E402

STAGES = ("build", "test", "deploy")


def git_repo(path: Path) -> Path:
    path.mkdir()
    (path / ".gitlab-ci.yml").write_text("job:\n  script: [echo hi]\n")
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "init"]):
        subprocess.run(
            ["git", "-c", "user.email=b@example.com", "-c", "user.name=b", *args], cwd=path, check=True
        )
    return path


def seed_runs(url: str, project_dir: str, pipelines: int, jobs_per: int, run_root: Path) -> tuple[int, int]:
    """`pipelines` finished pipelines of `jobs_per` jobs, and one of 200 jobs (the last one)."""
    sha = "f" * 40
    big = 0
    total = 0
    with RunStore.open(url) as store:
        for n in range(pipelines + 1):
            count = 200 if n == pipelines else jobs_per
            record = store.create_pipeline(
                project_dir=project_dir,
                ref="main",
                sha=sha,
                source="push",
                file=".gitlab-ci.yml",
                run_dir_root=str(run_root),
            )
            now = time.time()
            jobs = [
                NewJob(name=f"job-{i}", stage=STAGES[i % 3], when="on_success", allow_failure=False)
                for i in range(count)
            ]
            ids = store.add_jobs(record.id, jobs)
            for i, job_id in enumerate(ids):
                store.update_job(
                    job_id, status="failed" if i == 7 else "success", started_at=now - 5, finished_at=now
                )
            store.update_pipeline(record.id, status="failed", started_at=now - 6, finished_at=now)
            total += count
            big = record.id
    return big, total


def measure(client: TestClient, path: str, repeat: int) -> tuple[float, float, int]:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code, response.text[-900:])
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return statistics.median(samples), p95, len(response.content)


def measure_local(
    settings: ServerSettings, root: Path, args: argparse.Namespace, jobs_per: int
) -> list[tuple[str, float, float, int]]:
    """`aicd ui` on the same home, with a local project of as many pipelines (`aicd run`'s rows)."""
    local_dir = root / "shop"
    print(f"seeding a local project: {args.pipelines} pipelines x {jobs_per} jobs ...", flush=True)
    big, _ = seed_runs(
        settings.database_url, str(local_dir), args.pipelines, jobs_per, settings.home / "runs"
    )
    (root / "local-env").mkdir()
    seed_environment(settings.database_url, "", root / "local-env")  # a local deploy's scope: ""
    port = 8090
    launch, key = new_launch(port)
    local_settings = dataclasses.replace(settings, local_ui=True, port=port)
    rows = []
    with TestClient(create_app(local_settings, launch), base_url=f"http://127.0.0.1:{port}") as client:
        opened = client.get(f"{OPEN_PATH}?key={key}")
        assert opened.status_code == 200, opened.text
        job_id = int(
            client.get(f"/projects/shop/pipelines/{big}")
            .text.split("/projects/shop/jobs/", 1)[1]
            .split('"')[0]
        )
        pages = [
            ("`aicd ui`: projects", "/"),
            (f"`aicd ui`: a local project ({args.pipelines + 1} pipelines)", "/projects/shop"),
            (f"`aicd ui`: a local pipeline of {jobs_per} jobs", f"/projects/shop/pipelines/{big - 1}"),
            ("`aicd ui`: a local pipeline of 200 jobs", f"/projects/shop/pipelines/{big}"),
            ("`aicd ui`: a local job", f"/projects/shop/jobs/{job_id}"),
            ("`aicd ui`: an environment", "/projects/shop/environments/production"),
        ]
        for name, path in pages:
            median, p95, size = measure(client, path, args.repeat)
            rows.append((name, median, p95, size))
            print(f"  {name}: {median:.1f} ms", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--jobs-per", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="50 pipelines, 3 fetches a page")
    parser.add_argument("--output", type=Path, help="write the Markdown table there too")
    args = parser.parse_args()
    if args.quick:
        args.pipelines, args.repeat = 50, 3
    with tempfile.TemporaryDirectory(prefix="aicd-ui-bench-") as tmp:
        root = Path(tmp)
        home = root / "home"
        url = f"sqlite:///{home / 'aicd.db'}"
        settings = ServerSettings.load(
            {}, home=home, database_url=url, poll=False, environments=False, allowed_repo_roots=[root]
        )
        repo = git_repo(root / "repo")
        with TestClient(create_app(settings)) as client:
            admin = {"Authorization": f"Bearer {(home / 'admin-token').read_text().strip()}"}
            created = client.post(
                "/api/v1/projects", json={"name": "bench", "repo_url": str(repo)}, headers=admin
            )
            assert created.status_code == 201, created.text
            project = created.json()
            print(f"seeding {args.pipelines} pipelines x {args.jobs_per} jobs ...", flush=True)
            started = time.perf_counter()
            big, jobs = seed_runs(url, "server:bench", args.pipelines, args.jobs_per, home / "runs")
            seed_models(url, "bench", project["id"], big, 0, "f" * 40)
            seed_environment(url, "bench", root)
            print(f"seeded {jobs} jobs in {time.perf_counter() - started:.0f} s", flush=True)
            form = client.get("/signin")
            csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            signed = client.post(
                "/signin", data={"token": admin["Authorization"][7:], "csrf": csrf, "next": "/"}
            )
            assert signed.status_code in (200, 303), signed.text
            job_id = client.get(f"/api/v1/projects/bench/pipelines/{big}/jobs", headers=admin).json()[0]["id"]
            pages = [
                ("projects", "/"),
                (f"a project ({args.pipelines + 1} pipelines)", "/projects/bench"),
                (f"a pipeline of {args.jobs_per} jobs", f"/projects/bench/pipelines/{big - 1}"),
                ("a pipeline of 200 jobs", f"/projects/bench/pipelines/{big}"),
                ("a job", f"/projects/bench/jobs/{job_id}"),
                ("models", "/models"),
                ("a model (compare, lineage)", "/models/iris"),
                ("an environment (analysis, charts)", "/projects/bench/environments/production"),
                ("reliability (30 days)", "/reliability"),
                ("admin (users, audit log)", "/admin"),
            ]
            load = os.getloadavg()
            rows = []
            for name, path in pages:
                median, p95, size = measure(client, path, args.repeat)
                rows.append((name, median, p95, size))
                print(f"  {name}: {median:.1f} ms", flush=True)
        rows += measure_local(settings, root, args, jobs_per=args.jobs_per)
    lines = [
        f"# Web UI page render times ({args.pipelines + 1} pipelines, {jobs} jobs)",
        "",
        f"`python benchmarks/ui.py{' --quick' if args.quick else ''}`: the server's app in-process, SQLite, "
        f"{args.repeat} fetches a page after a warm-up; {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min) when measuring. "
        "The `aicd ui` rows: the same home served as `aicd ui` serves a local home, with a local project "
        "(`aicd run`'s rows) of as many pipelines and jobs, in the same run.",
        "",
        "| page | median ms | p95 ms | size KiB |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {median:.1f} | {p95:.1f} | {size / 1024:.0f} |" for name, median, p95, size in rows),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
