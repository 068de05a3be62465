"""Run roc-validator on a crate with no network: its HTTP cache is seeded with the RO-Crate JSON-LD
context the `rocrate` library ships (this machine reaches only package registries).

    .venv-roc/bin/python tests/tools/roc_validate.py CRATE_DIR CONTEXT_FILE PROFILE OUT_JSON

Runs in roc-validator's own virtual environment (it pins rich<14, which the TRE's tools outgrew).
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
from pathlib import Path

import requests
from requests_cache import CachedSession
from urllib3 import HTTPResponse

# The crates say RO-Crate 1.1 (the Process Run Crate profile 0.5 builds on it); the `rocrate`
# library ships the 1.3 context, whose terms include every 1.1 term. It is served for both.
CONTEXTS = ("https://w3id.org/ro/crate/1.1/context", "https://w3id.org/ro/crate/1.3/context")


def seed(cache: str, context_file: Path) -> None:
    session = CachedSession(cache_name=cache, backend="sqlite", expire_after=-1, allowable_codes=(200,))
    for url in CONTEXTS:
        response = requests.Response()
        response.status_code, response.url, response.encoding = 200, url, "utf-8"
        response._content = context_file.read_bytes()
        response.headers["Content-Type"] = "application/ld+json"
        response.request = requests.Request("GET", url).prepare()
        response.raw = HTTPResponse(body=io.BytesIO(response._content), status=200, preload_content=False)
        response.raw._request_url = url
        session.cache.save_response(response)


def main() -> int:
    crate, context_file, profile, out = sys.argv[1:5]
    with tempfile.TemporaryDirectory() as tmp:
        cache = str(Path(tmp) / "http-cache")
        seed(cache, Path(context_file))
        validator = Path(sys.executable).with_name("rocrate-validator")
        cmd = [str(validator), "-y", "validate", "--offline", "--cache-path", cache, "--no-paging"]
        cmd += ["-p", profile, "-f", "json", "-o", out, crate]
        return subprocess.run(cmd, capture_output=True, text=True, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
