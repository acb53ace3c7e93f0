"""`aicd demo --keep` ends with the command that shows its home in the browser: that command,
as printed, serves a real local home (made by a real `aicd run`) and prints the address to open."""

from __future__ import annotations

import io
import shlex
import subprocess
from pathlib import Path

from aicd.demo.story import DemoState, Progress, _print_keep, ui_command
from aicd_testing import AICD, aicd, clean_env, make_repo


def test_the_printed_ui_command_serves_the_home(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "iris-service", {".gitlab-ci.yml": "job:\n  script: [echo hi]\n"})
    home = tmp_path / "the demo's home"  # quoted as the shell needs
    env = {**clean_env(), "AICD_HOME": str(home)}
    ran = subprocess.run([*AICD, "run"], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stdout + ran.stderr

    out = io.StringIO()
    state = DemoState(tmp_path, home, repo, tmp_path / "logs", {})
    _print_keep(state, Progress(out), failed=False)
    printed = [line.strip() for line in out.getvalue().splitlines()]
    assert ui_command(home) in printed
    program, *args = shlex.split(ui_command(home))
    assert program == "aicd" and args == ["ui", "--home", str(home)]

    proc = subprocess.Popen(
        [*AICD, *args, "--port", "0"],
        cwd=tmp_path,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("open http://127.0.0.1:"):
                break
        assert lines and lines[-1].startswith("open http://127.0.0.1:"), "".join(lines)
        assert f"the local home {home}" in "".join(lines)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    missing = aicd(tmp_path, "ui", "--home", str(tmp_path / "nothing"), "--port", "0", timeout=60)
    assert missing.returncode != 0 and "no aicd history" in missing.stderr
