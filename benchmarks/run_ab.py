"""`aicd run --json` of two aicd source trees, alternating, on local_run.py's pipelines.

    python benchmarks/run_ab.py --a /tmp/main-src --b src [--runs 7] [--jobs 200] [--callgrind]

``--a`` and ``--b`` are the ``src`` folders of two checkouts (``git archive main | tar -x``
gives one of main); both run with this Python (``PYTHONPATH``), so only aicd's code differs.
Runs alternate a, b, a, b... in one repository of ``--jobs`` independent jobs (and the 3-job
pipeline), ``.aicd/`` moved aside between runs (see local_run.TRASH). Printed per tree: median
wall and median CPU of the process tree (user + system, job shells included), the load average
at start and end, and with ``--callgrind`` the instructions of the aicd process itself
(``valgrind --tool=callgrind``, children not counted: load-independent; a few runs each, the
200-job count moves by ~2% with how the jobs interleave).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import local_run

CODE = "from aicd.cli.main import main; main()"


def _env(src: Path) -> dict[str, str]:
    env = local_run.bench_env()
    env["PYTHONPATH"] = str(src)
    return env


def _run(src: Path, repo: Path, trash: Path) -> tuple[float, float]:
    if (repo / ".aicd").exists():
        (repo / ".aicd").rename(trash / str(len(os.listdir(trash))))
    argv = [sys.executable, "-c", CODE, "run", "--json"]
    sample, proc = local_run.timed_run(argv, repo, 600.0, tuple(_env(src).items()))
    if proc.returncode != 0:
        raise SystemExit(f"{src}: aicd run failed ({proc.returncode}): {proc.stderr[-300:]}")
    return sample.wall_s, sample.cpu_s


def _instructions(src: Path, repo: Path, trash: Path, out: Path) -> int:
    if (repo / ".aicd").exists():
        (repo / ".aicd").rename(trash / str(len(os.listdir(trash))))
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", CODE]
    proc = subprocess.run(
        [*argv, "run", "--json"], cwd=repo, env=_env(src), capture_output=True, text=True, check=False
    )
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"{src}: callgrind run failed: {proc.stderr[-300:]}")
    return int(found.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", type=Path, required=True, help="src folder of the first tree (say main)")
    ap.add_argument("--b", type=Path, required=True, help="src folder of the second tree (say a branch)")
    ap.add_argument("--runs", type=int, default=7, help="measured runs of each tree per pipeline")
    ap.add_argument("--jobs", type=int, default=200, help="jobs in the independent pipeline")
    ap.add_argument("--callgrind", type=int, default=0, metavar="N", help="also N callgrind runs each")
    args = ap.parse_args()
    srcs = {"a": args.a.resolve(), "b": args.b.resolve()}
    with tempfile.TemporaryDirectory(prefix="aicd-ab-") as tmp:
        root = Path(tmp)
        trash = root / "trash"
        trash.mkdir()
        for spec in (local_run.three_job(), local_run.independent(args.jobs)):
            repo = local_run.make_repo(root, spec)
            for src in srcs.values():  # warm-up: bytecode caches, the page cache
                _run(src, repo, trash)
            samples: dict[str, list[tuple[float, float]]] = {"a": [], "b": []}
            load0 = os.getloadavg()[0]
            for _ in range(args.runs):
                for key, src in srcs.items():
                    samples[key].append(_run(src, repo, trash))
            load1 = os.getloadavg()[0]
            load = f"load {load0:.1f}-{load1:.1f}"
            print(f"{spec.title} ({len(spec.jobs)} jobs), {args.runs} runs each, {load}")
            for key, src in srcs.items():
                wall = statistics.median(s[0] for s in samples[key])
                cpu = statistics.median(s[1] for s in samples[key])
                print(f"  {key} {src}: wall {wall:.3f} s, CPU {cpu:.3f} s (medians)")
            for _ in range(args.callgrind):
                for key, src in srcs.items():
                    count = _instructions(src, repo, trash, root / "callgrind.out")
                    print(f"  {key} callgrind: {count / 1e6:,.1f} M instructions")
        shutil.rmtree(trash, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
