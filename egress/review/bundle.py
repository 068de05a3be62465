"""Release bundles: a zip of the approved output files, the signed decision record and the release's
RO-Crate metadata (egress.review.crate).

The record lists every file's path in the bundle and its SHA-256, so `verify_bundle` can check a
bundle offline with nothing but the public keyset: the signature vouches for the list, the hashes
vouch for the bytes, and any file not in the list is refused.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bagit

from egress.review.storage import CHUNK, BlobStore, fsync_dir
from hub.kernel.fivesafes import CRATE_NAME
from hub.kernel.hashing import file_sha256
from hub.kernel.signing import InvalidRecord, verify_record

RECORD_NAME = "decision-record.jwt"


@dataclass(frozen=True)
class BundleFile:
    path: str  # inside the zip, e.g. files/tables/counts.csv
    sha256: str


def safe_member_name(*parts: str) -> str:
    """A zip member name built from user-chosen names that cannot escape on extraction."""
    cleaned = []
    for p in parts:
        p = "".join(c if c.isalnum() or c in "-_. " else "_" for c in p).strip(" .")
        cleaned.append(p or "_")
    return "/".join(cleaned)


def build_bundle(
    dest: Path, record_jwt: str, files: Iterable[BundleFile], store: BlobStore, crate: bytes | None = None
) -> str:
    """Write the bundle atomically and return its SHA-256; blobs are re-hashed while being copied.

    `crate` is the release's RO-Crate metadata (egress.review.crate), whose hash the record holds."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "xb") as fh:
            with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr(RECORD_NAME, record_jwt)
                if crate is not None:
                    zf.writestr(CRATE_NAME, crate)
                for f in files:
                    digest = hashlib.sha256()
                    with store.open(f.sha256) as src, zf.open(f.path, "w") as out:
                        while chunk := src.read(CHUNK):
                            digest.update(chunk)
                            out.write(chunk)
                    if digest.hexdigest() != f.sha256:
                        raise InvalidRecord(
                            f"stored file for {f.path} does not match its hash; not releasing"
                        )
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(dest.parent)
    return file_sha256(dest)


def bag_bundle(bundle: Path, dest: Path) -> None:
    """A verified bundle as a BagIt zip (bagit): its files, crate and record under data/, with
    SHA-256 and SHA-512 manifests: the packaging the Five Safes RO-Crate profile describes."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / dest.stem
        with zipfile.ZipFile(bundle) as zf:
            for name in zf.namelist():  # member names were made safe when the bundle was built
                target = (folder / name).resolve()
                if not target.is_relative_to(folder.resolve()):
                    raise InvalidRecord(f"bundle member {name} would land outside the bag")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(name))
        bagit.make_bag(
            str(folder), {"Source-Organization": "TRE egress service"}, checksums=["sha256", "sha512"]
        )
        bagit.Bag(str(folder)).validate()
        tmp_zip = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.tmp")
        with zipfile.ZipFile(tmp_zip, "w", zipfile.ZIP_DEFLATED) as out:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    out.write(path, path.relative_to(folder.parent).as_posix())
        os.replace(tmp_zip, dest)


def verify_bundle(path: Path, keyset: dict[str, Any]) -> dict[str, Any]:
    """The record's claims if the bundle is genuine and complete; InvalidRecord otherwise."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidRecord(f"{path} is not a release bundle: {exc}") from None
    with zf:
        names = set(zf.namelist())
        if RECORD_NAME not in names:
            raise InvalidRecord(f"{path} has no {RECORD_NAME}")
        claims = verify_record(zf.read(RECORD_NAME).decode("ascii", "replace"), keyset)
        listed = {f["path"]: f["sha256"] for f in claims.get("files", [])}
        if "crate_sha256" in claims:  # releases since the RO-Crate came; older bundles have none
            listed[CRATE_NAME] = claims["crate_sha256"]
        extra = names - set(listed) - {RECORD_NAME}
        if extra:
            raise InvalidRecord(f"bundle holds files the record does not list: {sorted(extra)}")
        for member, sha in listed.items():
            if member not in names:
                raise InvalidRecord(f"bundle is missing {member}")
            if hashlib.sha256(zf.read(member)).hexdigest() != sha:
                raise InvalidRecord(f"{member} does not match the SHA-256 in the signed record")
    return claims
