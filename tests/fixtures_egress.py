"""Egress test world: a project with an author, two checkers, a lead, an outsider and a workspace.

Registered in tests/conftest.py; constants are imported from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import select

from egress.review.base import EgressContext
from egress.review.commands import EgressCommands
from egress.review.models import EgressFile
from egress.review.queries import EgressQueries
from egress.web.app import create_app
from hub import registry as reg
from hub.kernel.audit import AuditEvent
from hub.kernel.db import session_scope, upgrade
from hub.kernel.settings import Settings, get_settings
from hub.web.sso import Identity, current_identity

PROJECT = "diab-study"
OTHER = "onco-study"
AUTHOR, AUTHOR_CHECKER, CHECKER1, CHECKER2, LEAD, OUTSIDER, OTHER_RESEARCHER, ADMIN = (
    "ann", "alf", "cat", "cid", "lee", "ozz", "bob", "admin"
)  # fmt: skip
CSV = b"region,count\nNorth,12\nSouth,3\n"


def build_world(settings: Settings) -> None:
    upgrade(settings)
    later = datetime.now(UTC) + timedelta(days=365)
    with session_scope(settings) as s:
        reg.add_user(s, ADMIN, ADMIN, "Admin", is_admin=True)
        for u in (AUTHOR, AUTHOR_CHECKER, CHECKER1, CHECKER2, LEAD, OUTSIDER, OTHER_RESEARCHER):
            reg.add_user(s, ADMIN, u, u.title())
        reg.create_project(s, ADMIN, PROJECT, "Diabetes study", LEAD, later)
        reg.create_project(s, ADMIN, OTHER, "Oncology study", LEAD, later)
        reg.add_member(s, LEAD, PROJECT, AUTHOR)
        reg.add_member(s, LEAD, PROJECT, AUTHOR_CHECKER)
        reg.add_member(s, ADMIN, PROJECT, AUTHOR_CHECKER, role="checker")
        reg.add_member(s, ADMIN, PROJECT, CHECKER1, role="checker")
        reg.add_member(s, ADMIN, PROJECT, CHECKER2, role="checker")
        reg.add_member(s, LEAD, OTHER, OTHER_RESEARCHER)
    for user in (AUTHOR, AUTHOR_CHECKER):
        home = settings.home_dir(PROJECT, user)
        (home / "out").mkdir(parents=True)
        (home / "out" / "counts.csv").write_bytes(CSV)
        (home / "analysis.py").write_text("print('hello')\n")


@dataclass
class EgressWorld:
    settings: Settings
    ctx: EgressContext
    commands: EgressCommands
    queries: EgressQueries

    def home(self, user: str = AUTHOR) -> Path:
        return self.settings.home_dir(PROJECT, user)

    def draft(self, author: str = AUTHOR, files=(("out/counts.csv", "output"),)) -> tuple[int, list[int]]:
        rid = self.commands.create_request(author, PROJECT, "Counts by region")
        gid = self.commands.add_group(author, rid, "tables", "Patients by region", "Cells < 10 suppressed")
        fids = [self.commands.add_file(author, rid, gid, path, kind) for path, kind in files]
        return rid, fids

    def submitted(self, author: str = AUTHOR, **kw) -> tuple[int, list[int]]:
        rid, fids = self.draft(author, **kw)
        self.commands.submit(author, rid)
        return rid, fids

    def sha(self, fid: int) -> str:
        with session_scope(self.settings) as s:
            return s.get(EgressFile, fid).sha256

    def vote(self, who: str, fid: int, decision: str, *args: str) -> str:
        """A checker's vote on the file's current bytes (as the file page sends it)."""
        return self.commands.vote(who, fid, decision, *args, sha256=self.sha(fid))

    def approve_all(self, fids: list[int], checkers=(CHECKER1, CHECKER2)) -> str:
        state = ""
        for c in checkers:
            for f in fids:
                state = self.vote(c, f, "approve")
        return state

    def audit(self, action_prefix: str) -> list[AuditEvent]:
        with session_scope(self.settings) as s:
            q = select(AuditEvent).where(AuditEvent.action.startswith(action_prefix)).order_by(AuditEvent.id)
            return list(s.execute(q).scalars())


@pytest.fixture
def eg(tre_root) -> EgressWorld:
    settings = get_settings()
    build_world(settings)
    ctx = EgressContext(settings)
    return EgressWorld(settings, ctx, EgressCommands(ctx), EgressQueries(ctx))


async def injected_identity(request: Request) -> Identity:
    """Test-only stand-in for the hub: the user named by the X-Test-User header, or the author.

    Installed as a FastAPI dependency override inside the test process only."""
    user = request.headers.get("x-test-user", AUTHOR)
    return Identity(user, f"csrf-{user}", request.headers.get("x-test-via", "cookie"))


def make_client(app: FastAPI, user: str = AUTHOR, **kw) -> TestClient:
    app.dependency_overrides[current_identity] = injected_identity
    client = TestClient(app, base_url="http://testserver", **kw)
    client.headers.update({"X-Test-User": user, "Origin": "http://testserver"})
    return client


@pytest.fixture
def web(eg):
    """(world, app, client factory) with identities injected by dependency override."""
    app = create_app(eg.settings, prefix="/services/egress/", sso=False)
    return eg, app, lambda user=AUTHOR, **kw: make_client(app, user, **kw)
