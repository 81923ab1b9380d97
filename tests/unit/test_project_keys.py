"""API keys in the project registry: issued, listed, revoked, read-only; older databases upgraded."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from gateway.projects import KeyRefused, ProjectRegistry, hash_key
from refinery.secrets_box import SecretBox
from sqlalchemy import create_engine, inspect, text


def _registry(path: Path) -> ProjectRegistry:
    return ProjectRegistry(f"sqlite:///{path}", SecretBox(Fernet.generate_key()))


def test_issued_keys_authenticate_and_only_full_ones_write(tmp_path: Path) -> None:
    reg = _registry(tmp_path / "p.db")
    project, first = reg.create_project("demo")
    viewer, viewer_key = reg.issue_key(project.id, "viewer", read_only=True)
    writer, writer_key = reg.issue_key(project.id, "ci")
    assert reg.authenticate(viewer_key) == reg.authenticate(writer_key) == reg.authenticate(first) == project.id
    assert reg.writer(writer_key) == project.id and reg.writer(viewer_key) is None and not reg.can_write(viewer_key)
    listed = reg.keys(project.id)
    assert [(k.name, k.read_only, k.revoked_at) for k in listed] == [
        ("default", False, None), ("viewer", True, None), ("ci", False, None)]
    assert all(k.prefix == key[:8] for k, key in zip(listed, [first, viewer_key, writer_key], strict=True))
    assert viewer.id == listed[1].id and writer.id == listed[2].id
    # Only the hash is kept: the key itself appears nowhere in the database file.
    assert viewer_key.encode() not in (tmp_path / "p.db").read_bytes()
    assert hash_key(viewer_key).encode() in (tmp_path / "p.db").read_bytes()


def test_revoking_stops_a_key_at_once_and_survives_a_restart(tmp_path: Path) -> None:
    reg = _registry(tmp_path / "p.db")
    project, first = reg.create_project("demo")
    info, key = reg.issue_key(project.id, "temp")
    revoked = reg.revoke_key(project.id, info.id)
    assert revoked.revoked_at is not None and reg.authenticate(key) is None
    with pytest.raises(KeyError):
        reg.revoke_key(project.id, info.id)  # already revoked
    other, _ = reg.create_project("other")
    with pytest.raises(KeyError):
        reg.revoke_key(other.id, reg.keys(project.id)[0].id)  # another project's key
    # The last full-access key cannot go: nobody could change the project any more.
    with pytest.raises(KeyRefused, match="only full-access key"):
        reg.revoke_key(project.id, reg.keys(project.id)[0].id)
    reg.close()
    again = _registry(tmp_path / "p.db")
    assert again.authenticate(key) is None and again.authenticate(first) == project.id
    assert [k.revoked_at is not None for k in again.keys(project.id)] == [False, True]
    kinds = [e.type for e in again.events(project.id)]
    assert kinds[-2:] == ["project.api_key_issued", "project.api_key_revoked"]


def test_a_database_from_before_key_names_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE api_keys (key_hash VARCHAR(64) PRIMARY KEY, project_id VARCHAR(64) NOT NULL, "
                          "key_prefix VARCHAR(16) NOT NULL)"))
        conn.execute(text("INSERT INTO api_keys VALUES (:h, 'p-old', 'opk-abcd')"), {"h": hash_key("opk-abcdefgh")})
        conn.execute(text("CREATE TABLE providers (project_id VARCHAR(64) NOT NULL, provider VARCHAR(64) NOT NULL, "
                          "base_url VARCHAR(500) NOT NULL, api_key_encrypted VARCHAR(2000) NOT NULL, "
                          "PRIMARY KEY (project_id, provider))"))
    engine.dispose()
    reg = _registry(path)
    columns = {c["name"] for c in inspect(reg.engine).get_columns("providers")}
    assert "model_costs" in columns
    assert reg.authenticate("opk-abcdefgh") == "p-old" and reg.can_write("opk-abcdefgh")
    [old] = reg.keys("p-old")
    assert old.id == hash_key("opk-abcdefgh")[:16] and old.name == "" and not old.read_only


def test_an_expired_key_stops_authenticating_and_does_not_count_as_full_access(tmp_path: Path) -> None:
    import time

    reg = _registry(tmp_path / "p.db")
    project, first = reg.create_project("demo")
    soon, soon_key = reg.issue_key(project.id, "soon", expires_at=time.time() + 3600)
    _, gone_key = reg.issue_key(project.id, "gone", expires_at=time.time() - 1)
    assert reg.authenticate(soon_key) == project.id and reg.writer(soon_key) == project.id
    assert reg.authenticate(gone_key) is None and reg.writer(gone_key) is None
    assert [k.expires_at is not None for k in reg.keys(project.id)] == [False, True, True]
    reg.revoke_key(project.id, soon.id)
    # The expired key is no full-access key: the first one is the last and stays.
    with pytest.raises(KeyRefused):
        reg.revoke_key(project.id, reg.keys(project.id)[0].id)
    reg.close()
    again = _registry(tmp_path / "p.db")
    assert again.authenticate(gone_key) is None and again.authenticate(first) == project.id
