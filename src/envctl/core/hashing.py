"""sha256 of files and text: the one home for the digests envctl records and compares.

Spelling: what envctl records of its own files (a lock's digest in an env's
state, a certificate, a bundle; a spec's or target definition's hash) is
`sha256:<hex>` (`sha256_digest`), the spelling that names its algorithm, as
OCI does. Bare hex (`sha256_file`, `sha256_bytes`) is only for comparing with
formats that spell it so: conda and pip package hashes, a lock's
content_hash slot, sha256sum. `digest_hex` reads either spelling, so files
written before (bare hex) still compare.
"""

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


def md5_text(text: str) -> str:
    """Hex md5 of text (conda-lock records its sources' md5 beside their sha256)."""
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()  # conda-lock's field, not security


def sha256_digest(data: bytes) -> str:
    """`sha256:<hex>` of bytes: the spelling envctl records."""
    return "sha256:" + sha256_bytes(data)


def sha256_text_digest(text: str) -> str:
    return sha256_digest(text.encode())


def sha256_file_digest(path: str | Path) -> str:
    return "sha256:" + sha256_file(path)


def digest_hex(value: object) -> str | None:
    """The hex of a recorded sha256, spelled `sha256:<hex>` or (older files) bare hex; None if not one."""
    if not isinstance(value, str):
        return None
    hex_part = value[7:] if value.startswith("sha256:") else value
    return hex_part.lower() if len(hex_part) == 64 and all(c in "0123456789abcdefABCDEF" for c in hex_part) else None


def same_digest(a: object, b: object) -> bool:
    """Two recorded sha256 values name the same bytes, whichever spelling each uses."""
    ha = digest_hex(a)
    return ha is not None and ha == digest_hex(b)


def sha256_hasher() -> "hashlib._Hash":
    """An incremental sha256, for bytes streamed elsewhere as they are hashed (a tar member, a download)."""
    return hashlib.sha256()
