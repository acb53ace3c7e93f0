"""ServerSettings: the allowed roots of local repositories and the webhook body limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from aicd.errors import ConfigError
from aicd.server.settings import DEFAULT_WEBHOOK_MAX_BODY_BYTES, ServerSettings


def test_defaults_allow_no_local_repository_and_cap_webhooks_at_1_mib(tmp_path: Path) -> None:
    settings = ServerSettings.load({}, home=tmp_path / "home")
    assert settings.allowed_repo_roots == ()
    assert settings.webhook_max_body_bytes == DEFAULT_WEBHOOK_MAX_BODY_BYTES == 1024 * 1024


def test_allowed_roots_are_real_folders_resolved(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "b")
    env = {"AICD_ALLOWED_REPO_ROOTS": f"{tmp_path / 'a'}:{tmp_path / 'link'}:"}
    settings = ServerSettings.load(env, home=tmp_path / "home")
    assert settings.allowed_repo_roots == ((tmp_path / "a").resolve(), (tmp_path / "b").resolve())
    flags = ServerSettings.load(env, home=tmp_path / "home", allowed_repo_roots=[str(tmp_path / "a")])
    assert flags.allowed_repo_roots == ((tmp_path / "a").resolve(),)  # the flag wins
    for bad, why in (("relative/dir", "absolute"), (str(tmp_path / "missing"), "allowed repository root")):
        with pytest.raises(ConfigError, match=why):
            ServerSettings.load({"AICD_ALLOWED_REPO_ROOTS": bad}, home=tmp_path / "home")


@pytest.mark.parametrize("raw", ["abc", "-1", "0", "100", str(26 * 1024 * 1024), "1e6"])
def test_a_webhook_limit_out_of_range_is_refused(tmp_path: Path, raw: str) -> None:
    with pytest.raises(ConfigError, match=r"AICD_WEBHOOK_MAX_BODY_BYTES|webhook body limit"):
        ServerSettings.load({"AICD_WEBHOOK_MAX_BODY_BYTES": raw}, home=tmp_path / "home")
    good = ServerSettings.load({"AICD_WEBHOOK_MAX_BODY_BYTES": "4096"}, home=tmp_path / "home")
    assert good.webhook_max_body_bytes == 4096


@pytest.mark.parametrize("raw", ["abc", "-1", "0", "1023", "1e9", "\u0661\u0660\u0660\u0660\u0660"])
def test_a_deploy_release_limit_out_of_range_is_refused(tmp_path: Path, raw: str) -> None:
    with pytest.raises(ConfigError, match="AICD_DEPLOY_MAX_RELEASE_BYTES"):
        ServerSettings.load({"AICD_DEPLOY_MAX_RELEASE_BYTES": raw}, home=tmp_path / "home")
    assert ServerSettings.load({}, home=tmp_path / "home").deploy_max_release_bytes == 512 * 1024 * 1024
    good = ServerSettings.load({"AICD_DEPLOY_MAX_RELEASE_BYTES": "4096"}, home=tmp_path / "home")
    assert good.deploy_max_release_bytes == 4096
