"""Signed records: release decisions (egress) and data permits (portal), as Ed25519-signed JWTs.

Each purpose has keys of its own in `settings.keys_dir/<purpose folder>/`: one private key per key
id (`<kid>.pem`, 0600, never mounted anywhere), `active` naming the key that signs, and
`keyset.json`, a public JWKS of every key ever used. Rotation adds a key and switches `active`;
old records still verify against the keyset. Verification accepts only EdDSA, a known `kid`, the
purpose's issuer and audience, and an unexpired record: a release record is never accepted as a
permit, nor the other way round.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

ALGORITHM = "EdDSA"
DEFAULT_VALIDITY = timedelta(days=365)


@dataclass(frozen=True)
class Purpose:
    folder: str  # under settings.keys_dir
    issuer: str
    audience: str


RELEASES = Purpose("egress", "tre-egress", "tre-release")
PERMITS = Purpose("permits", "tre-hdab", "tre-permit")


class InvalidRecord(Exception):
    """The record is forged, expired, signed by an unknown key or otherwise not to be trusted."""


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _write_public(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _public_jwk(key: Ed25519PrivateKey, kid: str) -> dict[str, Any]:
    jwk = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "alg": ALGORITHM, "use": "sig"}


class Signer:
    def __init__(self, keys_dir: Path, purpose: Purpose = RELEASES):
        self.purpose = purpose
        self.dir = keys_dir / purpose.folder

    @property
    def keyset_path(self) -> Path:
        return self.dir / "keyset.json"

    def ensure_key(self) -> str:
        """The active key id, generating the first key on first use."""
        active = self.dir / "active"
        if active.exists():
            return active.read_text().strip()
        return self.rotate()

    def rotate(self) -> str:
        """Generate a new signing key, publish its public half and make it the active one."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        kid = datetime.now(UTC).strftime("%Y%m%d") + "-" + secrets.token_hex(4)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write_private(self.dir / f"{kid}.pem", pem)
        keys = load_keyset(self.keyset_path)["keys"] if self.keyset_path.exists() else []
        _write_public(self.keyset_path, json.dumps({"keys": [*keys, _public_jwk(key, kid)]}, indent=2))
        _write_public(self.dir / "active", kid)
        return kid

    def sign(self, claims: dict[str, Any], validity: timedelta = DEFAULT_VALIDITY) -> str:
        kid = self.ensure_key()
        key = serialization.load_pem_private_key((self.dir / f"{kid}.pem").read_bytes(), password=None)
        now = datetime.now(UTC)
        payload = {
            **claims,
            "iss": self.purpose.issuer,
            "aud": self.purpose.audience,
            "iat": now,
            "nbf": now,
            "exp": now + validity,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(payload, key, algorithm=ALGORITHM, headers={"kid": kid, "typ": "JWT"})


def load_keyset(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise InvalidRecord(f"{path} is not a JWKS key set.")
    return data


def verify_record(token: str, keyset: dict[str, Any], purpose: Purpose = RELEASES) -> dict[str, Any]:
    """The record's claims if it is genuine and current; InvalidRecord otherwise."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidRecord(f"not a signed record: {exc}") from None
    if header.get("alg") != ALGORITHM:
        # Refuse before looking further: "none" and HMAC-with-the-public-key are the classic forgeries.
        raise InvalidRecord(f"record uses algorithm {header.get('alg')!r}; only {ALGORITHM} is accepted")
    kid = header.get("kid")
    jwk = next((k for k in keyset["keys"] if k.get("kid") == kid), None)
    if jwk is None:
        raise InvalidRecord(f"record is signed with an unknown key {kid!r}")
    try:
        key = jwt.PyJWK(jwk, algorithm=ALGORITHM).key
        return jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=purpose.audience,
            issuer=purpose.issuer,
            options={"require": ["exp", "iat", "iss", "aud", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidRecord("record has expired") from None
    except jwt.PyJWTError as exc:
        raise InvalidRecord(f"record signature or claims are invalid: {exc}") from None
