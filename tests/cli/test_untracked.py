"""What a job of `aicd run` sees of the working tree: tracked files; untracked ones with --untracked."""

from __future__ import annotations

from pathlib import Path

from aicd_testing import make_repo, run_json

PIPELINE = """\
look:
  script:
    - cat tracked.txt
    - if [ -e data/big.bin ]; then echo untracked-present; else echo untracked-absent; fi
    - test ! -e secret.env
"""


def test_jobs_get_tracked_files_and_untracked_ones_only_when_asked(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {".gitlab-ci.yml": PIPELINE, "tracked.txt": "committed\n", ".gitignore": "secret.env\n"},
    )
    (repo / "tracked.txt").write_text("edited\n")  # uncommitted edits of tracked files are seen
    (repo / "data").mkdir()
    (repo / "data" / "big.bin").write_bytes(b"\0" * 100_000)
    (repo / "secret.env").write_text("TOKEN=x\n")  # ignored: never in a job

    code, result, _ = run_json(repo)
    assert code == 0 and result["pipeline"]["status"] == "success"
    log = Path(result["jobs"][0]["log_path"]).read_text()
    assert "edited" in log and "untracked-absent" in log

    code, result, _ = run_json(repo, "--untracked")
    assert code == 0 and result["pipeline"]["status"] == "success"
    log = Path(result["jobs"][0]["log_path"]).read_text()
    assert "edited" in log and "untracked-present" in log
