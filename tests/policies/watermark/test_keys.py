"""Watermark keys: sources, refusals, ids and derivation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from gensdk.errors import ConfigError
from gensdk_watermark.keys import WatermarkKey, create_key_file, resolve_key


def test_key_sources(key_file: Path, key: WatermarkKey) -> None:
    assert resolve_key(key_file=key_file) == key
    assert resolve_key(SecretStr(key.secret.hex())) == key
    assert resolve_key(key.secret.hex()) == key
    raw = key_file.with_name("raw.key")
    raw.write_bytes(b"\xff" * 32)
    raw.chmod(0o600)
    assert resolve_key(key_file=raw).secret == b"\xff" * 32


def test_refusals(tmp_path: Path, key_file: Path, key: WatermarkKey) -> None:
    with pytest.raises(ConfigError, match="needs a key"):
        resolve_key()
    with pytest.raises(ConfigError, match="not both"):
        resolve_key(key.secret.hex(), key_file)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_key(key_file=tmp_path / "missing.key")
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        WatermarkKey.from_hex("abcd")
    key_file.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        resolve_key(key_file=key_file)


def test_key_id_and_subkeys(key: WatermarkKey) -> None:
    assert len(key.key_id) == 16 and key.key_id not in key.secret.hex()
    assert key.derive("text/kgw") != key.derive("image/tile")
    assert WatermarkKey(b"x" * 16).key_id != key.key_id


def test_create_key_file_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "new.key"
    key = create_key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert WatermarkKey.from_file(path) == key
    with pytest.raises(ConfigError, match="never overwritten"):
        create_key_file(path)
