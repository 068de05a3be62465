"""Registry fixtures (registered in tests/conftest.py) and quick builders for users, projects, grants.

`registry` gives an upgraded, empty registry (its Settings); `make_world()` adds the standard cast
(admin, custodian, lead, researcher, checker), the tiny "diabetes" cohort, a project and a grant.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from hub import registry as reg
from hub.kernel.db import session_scope, upgrade
from hub.kernel.settings import Settings, get_settings
from hub.registry.models import Dataset

ADMIN = "admin"
CUSTODIAN = "custodian"
LEAD = "lead"
RESEARCHER = "researcher"
CHECKER = "checker"


def future(days: int = 365) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def write_cohort(folder: Path, n: int = 20) -> dict[str, Path]:
    """A tiny deterministic cohort: patients (one row each) and lab results (several per patient)."""
    folder.mkdir(parents=True, exist_ok=True)
    patients = folder / "patients.csv"
    labs = folder / "labs.csv"
    lines = ["national_id,birth_date,sex,postcode"]
    lab_lines = ["national_id,test_date,hba1c,atc_code"]
    for i in range(n):
        pid = f"{9000000000 + i:010d}"
        lines.append(f"{pid},{1940 + i % 50}-0{1 + i % 9}-1{i % 9},{'FM'[i % 2]},AB{i % 7}")
        for j in range(3):
            lab_lines.append(f"{pid},2020-0{1 + j}-15,{40 + (i * 7 + j) % 50},A10BA02")
    patients.write_text("\n".join(lines) + "\n")
    labs.write_text("\n".join(lab_lines) + "\n")
    return {"patients": patients, "labs": labs}


def write_optout(folder: Path, ids: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "optout.csv"
    path.write_text("national_id\n" + "".join(f"{i}\n" for i in ids))
    return path


@dataclass
class World:
    settings: Settings
    project: str
    dataset: str
    grant_id: str | None
    data_dir: Path


def submit_applications(
    settings: Settings, lead: str, count: int, datasets: list[dict], first: datetime | None = None
) -> list[str]:
    """`count` submitted applications of `lead` for `datasets` (the application form's "datasets"),
    oldest first; with `first`, each a minute after the one before."""
    from hub.registry import applications as apps

    fields = {
        "title": "A study",
        "description": "d",
        "benefit": "b",
        "data_form_reason": "r",
        "safeguards": "s",
        "ends_at": datetime.now(UTC) + timedelta(days=200),
        "datasets": datasets,
    }
    ids = []
    for n in range(count):
        with session_scope(settings) as s:
            application = apps.start_application(s, lead, f"study-{n:03d}", f"Study {n}")
            apps.update_application(s, lead, application.id, application.revision, fields)
            apps.submit_application(s, lead, application.id, application.revision)
            if first is not None:
                application.submitted_at = first + timedelta(minutes=n)
            ids.append(application.id)
    return ids


@pytest.fixture
def registry(tre_root) -> Settings:
    """An upgraded, empty registry at the test's TRE_ROOT; returns its settings."""
    settings = get_settings()
    upgrade(settings)
    return settings


@pytest.fixture
def make_users(registry) -> Callable[..., None]:
    """Create the standard cast: admin, custodian, lead, researcher, checker (plus any extra names)."""

    def _make(*extra: str) -> None:
        with session_scope(registry) as s:
            if reg.find_user(s, ADMIN) is None:
                reg.add_user(s, ADMIN, ADMIN, "Admin", is_admin=True)
            for name in (CUSTODIAN, LEAD, RESEARCHER, CHECKER, *extra):
                if reg.find_user(s, name) is None:
                    reg.add_user(s, ADMIN, name, name.title(), is_custodian=name == CUSTODIAN)

    return _make


@pytest.fixture
def make_world(registry, make_users, tmp_path) -> Callable[..., World]:
    """Users, a cohort dataset, a project with a researcher and a checker, and a grant.

    `grant="approved"|"requested"|None` picks how far the grant goes.
    """

    def _make(project: str = "diab-study", grant: str | None = "approved", n: int = 20) -> World:
        make_users()
        files = write_cohort(tmp_path / "sources", n)
        with session_scope(registry) as s:
            if not s.execute(select(Dataset).where(Dataset.name == "diabetes")).first():
                reg.register_dataset(
                    s,
                    CUSTODIAN,
                    "diabetes",
                    [reg.SourceFile(k, v) for k, v in files.items()],
                    "national_id",
                    title="Diabetes cohort",
                    description="Synthetic diabetes cohort",
                )
            reg.create_project(s, ADMIN, project, "Diabetes study", LEAD, future())
            reg.add_member(s, LEAD, project, RESEARCHER)
            reg.add_member(s, ADMIN, project, CHECKER, role="checker")
            grant_id = None
            if grant:
                g = reg.request_grant(
                    s, LEAD, project, "diabetes", {"patients": ["*"], "labs": ["national_id", "hba1c"]}
                )
                grant_id = g.id
                if grant == "approved":
                    reg.decide_grant(s, CUSTODIAN, g.id, approve=True)
        return World(registry, project, "diabetes", grant_id, tmp_path / "sources")

    return _make


def publish_release(settings: Settings, project: str, number: int = 1) -> Path:
    """Fake a published release (what provisioning does): releases/<n>/ and current -> releases/<n>."""
    release = settings.project_dir(project) / "releases" / str(number)
    (release / "data").mkdir(parents=True, exist_ok=True)
    link = settings.current_release(project)
    tmp = link.with_name(".current.tmp")
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(Path("releases") / str(number), tmp)
    os.replace(tmp, link)
    return release


def schema_check_config(url: str):
    """An Alembic config that knows every part's models, for `alembic check` against the migrations
    (the kernel's env.py imports none of them)."""
    import egress.review.models  # noqa: F401 - each part registers its tables on the one Base
    import hub.guard.store
    import hub.jobs.models
    import hub.kernel.audit
    import hub.kernel.codelog
    import hub.provisioning.runs
    import hub.registry.models  # noqa: F401
    from hub.kernel.db import Base, alembic_config

    cfg = alembic_config(url)
    cfg.attributes["target_metadata"] = Base.metadata
    return cfg
