"""Run the egress app under uvicorn with test identities (X-Test-User header): tests and benchmarks only.

    python -m tests.egress_testserver PORT [WORKERS]

The identity comes from a FastAPI dependency override installed here, in this test-only process;
the production entry point (`python -m egress`) has no way to load it.
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI

from egress.app import create_app
from egress.auth import current_identity
from tests.fixtures_egress import injected_identity


def app_factory() -> FastAPI:
    app = create_app(prefix="/services/egress/", sso=False)
    app.dependency_overrides[current_identity] = injected_identity
    return app


def main() -> None:
    port = int(sys.argv[1])
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    uvicorn.run(
        "tests.egress_testserver:app_factory",
        factory=True,
        host="127.0.0.1",
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
