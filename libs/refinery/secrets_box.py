"""Encryption at rest for provider secrets (Fernet), with the key from settings or a 0600 file.

The key is what makes stored provider keys readable: a gateway that comes back with another key
(a pod rescheduled onto an empty disk) can no longer open any of them. So deployments give it as a
setting (`REFINERY_ENCRYPTION_KEY`, from a Kubernetes Secret) or keep the file on a persistent
volume; the file is only the zero-configuration default.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

KEY_HELP = ("must be a Fernet key: 32 bytes in url-safe base64, 44 characters; make one with `python -c "
            "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`")


def check_key(key: str) -> str:
    """`key` stripped, or ValueError saying what a key must be (settings validate with this at start-up)."""
    key = key.strip()
    try:
        Fernet(key.encode())
    except (ValueError, TypeError) as exc:
        raise ValueError(f"the encryption key {KEY_HELP}") from exc
    return key


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def from_file(cls, path: Path) -> SecretBox:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(Fernet.generate_key())
            path.chmod(0o600)
        return cls(check_key(path.read_text()).encode())

    @classmethod
    def from_key_or_file(cls, key: str | None, path: Path) -> SecretBox:
        """The box of `key` when one is configured, else of the key kept in `path` (made when missing)."""
        if key:
            return cls(check_key(key).encode())
        return cls.from_file(path)

    def seal(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("secret cannot be decrypted with this key") from exc
