"""SecretBox: encryption at rest of project variables and webhook secrets (Fernet).

The key is AICD_SECRET_KEY, or the file home/secret.key (created with mode 0600
on first use). Losing the key makes the stored secrets unreadable.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from aicd.errors import ConfigError

KEY_FILE = "secret.key"


class SecretBox:
    def __init__(self, key: str | bytes, *, source: str = "AICD_SECRET_KEY") -> None:
        self._source = source
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError):
            raise ConfigError(
                f"{source}: not a valid secret key (expected 32 url-safe base64-encoded bytes, "
                "as made by `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`)"
            ) from None

    @classmethod
    def load(cls, home: Path, key: str | None) -> SecretBox:
        """The key given (AICD_SECRET_KEY), else home/secret.key, created (0600) when missing."""
        if key:
            return cls(key.strip())
        path = home / KEY_FILE
        if not path.exists():
            _create_key_file(path)
        try:
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the secret key: {exc}") from None
        return cls(text, source=str(path))

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError, ValueError):
            raise ConfigError(
                f"cannot decrypt a stored secret with the key from {self._source}: the key is not the one "
                "the secret was encrypted with (was AICD_SECRET_KEY or secret.key changed?)"
            ) from None


def _create_key_file(path: Path) -> None:
    """Write a new key to a private temporary file, then link it into place: a process that
    races us either wins (its key is used by all) or finds the complete file of the winner."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            os.link(tmp, path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create the secret key file: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
