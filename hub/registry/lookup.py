"""Look-ups by name and id, input checks shared by the operations, and the person acting.

Every operation starts here: it finds its objects (or says how to find the right name) and turns the
acting username into the RegistryActor the rules judge.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.registry.access import roles_in
from hub.registry.errors import RegistryError
from hub.registry.models import Dataset, Grant, Project, User
from hub.registry.permissions import NotAllowed, ProjectState, RegistryAction, RegistryActor, require
from hub.registry.vocabulary import is_slug


def require_aware(value: datetime, option: str = "--expires") -> datetime:
    if value.tzinfo is None:
        raise RegistryError(f"{option} must be a timezone-aware time (UTC), not {value.isoformat()}")
    return value


def require_slug(kind: str, value: str) -> str:
    if not is_slug(value):
        raise RegistryError(
            f"invalid {kind} name {value!r}: use 3-40 lowercase letters, digits and single '-', "
            "starting with a letter and not ending with '-'"
        )
    return value


def find_user(session: Session, username: str) -> User | None:
    return session.execute(select(User).where(User.username == username)).scalar_one_or_none()


def get_user(session: Session, username: str) -> User:
    user = find_user(session, username)
    if user is None:
        raise RegistryError(f"no user called {username!r}; an administrator can add one with `tre user add`")
    return user


def get_project(session: Session, slug: str) -> Project:
    project = session.execute(select(Project).where(Project.slug == slug)).scalar_one_or_none()
    if project is None:
        raise RegistryError(f"no project called {slug!r}; see `tre project list`")
    return project


def get_dataset(session: Session, ref: str) -> Dataset:
    """A dataset by `name` (latest version) or `name:version`."""
    name, _, version = ref.partition(":")
    query = select(Dataset).where(Dataset.name == name)
    if version:
        if not version.isdigit():
            raise RegistryError(f"invalid dataset version in {ref!r}: use NAME or NAME:NUMBER")
        query = query.where(Dataset.version == int(version))
    dataset = session.execute(query.order_by(Dataset.version.desc()).limit(1)).scalar_one_or_none()
    if dataset is None:
        raise RegistryError(f"no dataset {ref!r}; see `tre dataset list`")
    return dataset


def get_grant(session: Session, grant_id: str) -> Grant:
    grant = session.get(Grant, grant_id)
    if grant is None:
        raise RegistryError(f"no grant {grant_id!r}; see `tre grant list`")
    return grant


def acting(session: Session, username: str, project: Project | None = None) -> tuple[User, RegistryActor]:
    """The acting user and what the rules need to know of them (their roles in `project`)."""
    user = find_user(session, username)
    if user is None:
        raise NotAllowed(
            f"{username!r} is not a registered user; run as one with --as NAME or TRE_ACTOR=NAME"
        )
    roles = frozenset(roles_in(session, user, project)) if project is not None else frozenset()
    return user, RegistryActor(user.username, user.is_admin, user.is_custodian, user.disabled, roles)


def project_state(project: Project) -> ProjectState:
    return ProjectState(project.slug, project.status, project.expires_at)


def authorise(session: Session, username: str, action: RegistryAction, slug: str | None = None) -> User:
    """Check a rule that has no registry change of its own (provisioning, audit reading)."""
    project = get_project(session, slug) if slug else None
    user, who = acting(session, username, project)
    require(action, who)
    return user
