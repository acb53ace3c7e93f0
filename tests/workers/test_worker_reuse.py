"""What an `aicd worker` process keeps between attempts: its one event loop for every attempt
(whichever Celery pool thread takes the message) and the executors of recent commits."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from aicd.executors.local import LocalExecutor
from aicd.workers.attempt import Executors, WorkerConfig
from aicd.workers.service import AttemptLoop


def _spec(sha: str, project: int = 1) -> dict[str, Any]:
    return {"commit_sha": sha, "project_id": project, "job_env": {"AICD_ENV_SCOPE": "demo"}}


def test_executors_are_kept_per_commit_and_project_and_the_oldest_idle_ones_closed(tmp_path: Path) -> None:
    async def case() -> None:
        config = WorkerConfig(home=tmp_path, server="http://127.0.0.1:1", sandbox=None)
        source = tmp_path / "sources" / "x.tar.gz"
        pool = Executors()
        key, first = pool.take(config, _spec("a" * 40), source)
        await pool.give_back(key, first)
        key, again = pool.take(config, _spec("a" * 40), source)
        assert again is first  # the same commit and project: the same executor (its source unpacked once)
        other_key, other = pool.take(config, _spec("a" * 40, project=2), source)
        assert other is not first  # another project: its own cache folder, its own executor
        await pool.give_back(other_key, other)
        made: list[LocalExecutor] = []
        for i in range(Executors.KEEP + 2):
            k, executor = pool.take(config, _spec(f"{i:x}" * 40), source)
            made.append(executor)
            await pool.give_back(k, executor)
        assert not first._closed  # still in use by an attempt: never closed under it
        await pool.give_back(key, first)
        # at most KEEP idle executors remain; the least recently used ones were closed
        kept = [e for e in (first, other, *made) if not e._closed]
        assert len(kept) == Executors.KEEP and kept == made[-Executors.KEEP :]
        no_sha, single = pool.take(config, {"commit_sha": None, "project_id": 1, "job_env": {}}, source)
        assert no_sha is None  # a source of its own: not shared, closed when its attempt ends
        await pool.give_back(no_sha, single)
        assert single._closed
        await pool.close()
        assert all(e._closed for e in made)

    asyncio.run(case())


def test_attempts_from_any_pool_thread_run_in_the_one_event_loop() -> None:
    loops = AttemptLoop()
    seen: list[asyncio.AbstractEventLoop] = []

    async def attempt(i: int) -> int:
        await asyncio.sleep(0.01)
        seen.append(asyncio.get_running_loop())
        return i * 2

    results: list[int] = []
    threads = [threading.Thread(target=lambda i=i: results.append(loops.run(attempt(i)))) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [0, 2, 4, 6]
    assert len(seen) == 4 and all(loop is loops.loop for loop in seen)

    async def last() -> None:
        seen.clear()

    loops.close(last())
    assert seen == [] and not loops.loop.is_running()
