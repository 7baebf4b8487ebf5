"""sha256 of files and text: the one home for the digests envctl records and compares."""

from __future__ import annotations

import hashlib
from pathlib import Path

_BLOCK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in blocks (locks and wheels can be large)."""
    return file_digest(path, "sha256").hex()


def sha256_file_or_none(path: str | Path) -> str | None:
    """sha256_file, or None when the file cannot be read (missing lock, say)."""
    try:
        return sha256_file(path)
    except OSError:
        return None


def file_digest(path: str | Path, algo: str) -> bytes:
    """Raw digest of a file with any hashlib algorithm (conda records md5 and sha256)."""
    with open(path, "rb") as handle:
        if hasattr(hashlib, "file_digest"):  # Python 3.11+
            return hashlib.file_digest(handle, algo).digest()
        digest = hashlib.new(algo)
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
        return digest.digest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode())
