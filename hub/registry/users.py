"""Registry users and their global roles (administrator, data custodian)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.kernel import audit
from hub.kernel.audit_actions import AuditAction
from hub.registry.errors import RegistryError
from hub.registry.lookup import acting, find_user, get_user, require_slug
from hub.registry.models import User
from hub.registry.permissions import NotAllowed, RegistryAction, require
from hub.registry.vocabulary import GlobalRole


def add_user(
    session: Session,
    actor: str,
    username: str,
    display_name: str = "",
    *,
    is_admin: bool = False,
    is_custodian: bool = False,
) -> User:
    """Create a registry user. The very first user (bootstrap) must be an administrator."""
    require_slug("user", username)
    bootstrap = session.execute(select(func.count(User.id))).scalar_one() == 0
    if bootstrap:
        if not is_admin:
            raise RegistryError(
                "the registry has no users yet: the first user must be an administrator (--admin)"
            )
    else:
        _, who = acting(session, actor)
        require(RegistryAction.ADD_USER, who, target=username)
        if (is_admin or is_custodian) and username == actor:
            raise NotAllowed(f"{actor} cannot appoint themselves; another administrator must do it")
    if find_user(session, username) is not None:
        raise RegistryError(f"user {username!r} already exists; see `tre user list`")
    user = User(username=username, display_name=display_name, is_admin=is_admin, is_custodian=is_custodian)
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor,
        AuditAction.USER_ADD,
        "user",
        username,
        {
            "display_name": display_name,
            "is_admin": is_admin,
            "is_custodian": is_custodian,
            "bootstrap": bootstrap,
        },
    )
    return user


def set_user_disabled(session: Session, actor: str, username: str, disabled: bool) -> User:
    _, who = acting(session, actor)
    require(RegistryAction.DISABLE_USER, who, target=username)
    user = get_user(session, username)
    if user.disabled == disabled:
        return user
    user.disabled = disabled
    audit.record(
        session, actor, AuditAction.USER_DISABLE if disabled else AuditAction.USER_ENABLE, "user", username
    )
    return user


def set_user_role(session: Session, actor: str, username: str, role: str, on: bool = True) -> User:
    """Give (or take away, with on=False) the global role "admin" or "custodian"."""
    try:
        role = GlobalRole(role)
    except ValueError:
        raise RegistryError(
            f"unknown role {role!r}: use admin or custodian (project roles: `tre project member`)"
        ) from None
    _, who = acting(session, actor)
    require(RegistryAction.GRANT_ROLE, who, target=username)
    user = get_user(session, username)
    setattr(user, "is_admin" if role is GlobalRole.ADMIN else "is_custodian", on)
    audit.record(session, actor, AuditAction.USER_ROLE, "user", username, {"role": role.value, "on": on})
    return user


def set_user_subject(session: Session, actor: str, username: str, subject: str | None) -> User:
    """Link a user to their subject at the identity provider (None unlinks); administrators only."""
    _, who = acting(session, actor)
    require(RegistryAction.GRANT_ROLE, who, target=username)
    user = get_user(session, username)
    subject = (subject or "").strip() or None
    if subject is not None:
        if len(subject) > 255:
            raise RegistryError("an identity provider subject has at most 255 characters")
        holder = session.execute(select(User).where(User.subject == subject)).scalar_one_or_none()
        if holder is not None and holder.username != username:
            raise RegistryError(f"subject {subject!r} is already linked to {holder.username}")
    user.subject = subject
    audit.record(session, actor, AuditAction.USER_SUBJECT, "user", username, {"subject": subject})
    return user
