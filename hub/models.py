"""Registry models: who may see which data, for which project, until when.

Users, projects and datasets are named by validated slugs; grants by an opaque id. Every change to
these rows goes through `hub.registry`, which writes an audit event in the same transaction.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Any, Literal, TypedDict

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hub.db import Base, UTCDateTime, utcnow

SLUG_RE = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")

DatasetKind = Literal["cohort", "optout"]
ProjectStatus = Literal["active", "suspended", "closed"]
Role = Literal["lead", "researcher", "checker"]
GrantStatus = Literal["requested", "approved", "rejected", "revoked"]

DATASET_KINDS: tuple[str, ...] = ("cohort", "optout")
PROJECT_STATUSES: tuple[str, ...] = ("active", "suspended", "closed")
ROLES: tuple[str, ...] = ("lead", "researcher", "checker")
GRANT_STATUSES: tuple[str, ...] = ("requested", "approved", "rejected", "revoked")
SENSITIVITIES: tuple[str, ...] = ("identifier", "quasi-identifier", "sensitive", "other")


def is_slug(value: str) -> bool:
    return bool(SLUG_RE.match(value))


def new_grant_id() -> str:
    # Opaque, unguessable and short enough to type: "g-" + 48 random bits in hex.
    return "g-" + secrets.token_hex(6)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class ColumnSpec(TypedDict, total=False):
    name: str
    type: str
    sensitivity: str
    coding_system: str  # e.g. "ATC", "ICD-O-3"; only present when recognised


class TableSpec(TypedDict):
    name: str
    source: str  # absolute path of the registered source file
    format: str  # "csv" | "parquet"
    columns: list[ColumnSpec]
    identifier_column: str | None  # the dataset's identifier column, if this table has it
    row_count: int
    content_hash: str  # "sha256:<hex>" of the source file's bytes


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(40), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_custodian: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"User({self.username!r})"


class Dataset(Base):
    """One version of a registered dataset; re-registering changed sources adds a new version."""

    __tablename__ = "datasets"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        CheckConstraint(_in("kind", DATASET_KINDS), name="kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40), index=True)
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(300), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(16), default="cohort")
    custodian_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    tables: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # list of TableSpec
    identifier_column: Mapped[str] = mapped_column(String(200))
    # The table with one row per individual (identifier unique there), e.g. "patients".
    person_table: Mapped[str] = mapped_column(String(200))
    row_count: Mapped[int] = mapped_column(Integer)  # rows over all tables
    unique_individuals: Mapped[int] = mapped_column(Integer)
    # Catalogue facts computed at registration, e.g. {"min_typical_age": 21, "max_typical_age": 88}.
    profile: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    content_hash: Mapped[str] = mapped_column(String(80))  # over the tables' hashes, in order
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    custodian: Mapped[User] = relationship()

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def table(self, name: str) -> dict[str, Any] | None:
        return next((t for t in self.tables if t["name"] == name), None)

    def column_names(self, table: str) -> list[str]:
        spec = self.table(table)
        return [c["name"] for c in spec["columns"]] if spec else []


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (CheckConstraint(_in("status", PROJECT_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    purpose: Mapped[str] = mapped_column(Text, default="")
    lead_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Per-project workspace limits overriding the defaults: {"mem": "4g", "cpu": 2.0, "pids": 512}.
    limits: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Per-project overrides of the disclosure-check defaults (egress.sdc.RuleConfig), e.g. {"threshold": 15}.
    sdc_config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    lead: Mapped[User] = relationship()
    memberships: Mapped[list[Membership]] = relationship(back_populates="project")
    grants: Mapped[list[Grant]] = relationship(back_populates="project")


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("user_id", "project_id", "role"),
        CheckConstraint(_in("role", ROLES), name="role"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    added_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    project: Mapped[Project] = relationship(back_populates="memberships")


class Grant(Base):
    """A project's access to one dataset version: which columns, which rows, how transformed, until when."""

    __tablename__ = "grants"
    __table_args__ = (CheckConstraint(_in("status", GRANT_STATUSES), name="status"),)

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_grant_id)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    # {table name: [approved column names]}; tables not listed are not released.
    columns: Mapped[dict[str, list[str]]] = mapped_column(JSON)
    remove_opted_out: Mapped[bool] = mapped_column(Boolean, default=True)
    # {table name: [columns replaced by per-project pseudonyms]}; always covers the identifier column.
    pseudonymise: Mapped[dict[str, list[str]]] = mapped_column(JSON)
    age_bands: Mapped[bool] = mapped_column(Boolean, default=False)
    date_shift_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="requested")
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Who approved or rejected, and when.
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")

    project: Mapped[Project] = relationship(back_populates="grants")
    dataset: Mapped[Dataset] = relationship()
    requested_by: Mapped[User] = relationship(foreign_keys=[requested_by_id])
    approved_by: Mapped[User | None] = relationship(foreign_keys=[approved_by_id])
    revoked_by: Mapped[User | None] = relationship(foreign_keys=[revoked_by_id])


class AuditEvent(Base):
    """One link of the append-only audit chain; `hash` covers `prev_hash`, so order is sealed too."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    action: Mapped[str] = mapped_column(String(100), index=True)
    object_type: Mapped[str] = mapped_column(String(50))
    object_id: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
