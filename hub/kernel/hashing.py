"""The one file-hash helper: SHA-256 of a file's bytes, read in chunks."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of the file at `path` (streamed: a 10 GB source never sits in memory)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
