"""SecretBox: Fernet encryption at rest; the key file; a wrong or bad key is one clear error."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from aicd.core.secrets import KEY_FILE, SecretBox
from aicd.errors import ConfigError


def test_roundtrip_and_ciphertext_hides_the_value(tmp_path: Path) -> None:
    box = SecretBox.load(tmp_path, None)
    for plain in ["s3cr3t-value", "", "ünïcödé ✓ and\nnewlines", "x" * 10_000]:
        token = box.encrypt(plain)
        assert box.decrypt(token) == plain
        if plain:
            assert plain not in token
    # Fernet is randomised: the same value twice gives two ciphertexts.
    assert box.encrypt("same") != box.encrypt("same")


def test_key_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    home = tmp_path / "home"  # does not exist yet
    first = SecretBox.load(home, None)
    key_file = home / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    token = first.encrypt("value")
    second = SecretBox.load(home, None)  # a restarted server reads the same key
    assert second.decrypt(token) == "value"
    Fernet(key_file.read_text().strip())  # a valid Fernet key


def test_env_key_wins_over_the_file(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    box = SecretBox.load(tmp_path, key)
    assert not (tmp_path / KEY_FILE).exists()
    assert Fernet(key.encode()).decrypt(box.encrypt("v").encode()) == b"v"


def test_wrong_key_is_a_clear_error_without_the_secret(tmp_path: Path) -> None:
    token = SecretBox.load(tmp_path / "a", None).encrypt("hunter2")
    other = SecretBox.load(tmp_path / "b", None)
    with pytest.raises(ConfigError) as caught:
        other.decrypt(token)
    message = str(caught.value)
    assert "not the one the secret was encrypted with" in message
    assert str(tmp_path / "b" / KEY_FILE) in message
    assert "hunter2" not in message and token not in message
    with pytest.raises(ConfigError, match="cannot decrypt"):
        other.decrypt("not a fernet token")


def test_malformed_key_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="AICD_SECRET_KEY: not a valid secret key"):
        SecretBox.load(tmp_path, "too-short")
    bad_file = tmp_path / "home"
    bad_file.mkdir()
    (bad_file / KEY_FILE).write_text("garbage\n")
    with pytest.raises(ConfigError, match=f"{KEY_FILE}: not a valid secret key"):
        SecretBox.load(bad_file, None)


def test_concurrent_first_use_agrees_on_one_key(tmp_path: Path) -> None:
    """Several processes creating the key file at once must end with one key all of them use."""
    code = (
        "import sys; from pathlib import Path; from aicd.core.secrets import SecretBox; "
        "print(SecretBox.load(Path(sys.argv[1]), None).encrypt('v'))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    tokens = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    box = SecretBox.load(tmp_path, None)
    assert [box.decrypt(t) for t in tokens] == ["v"] * 6
