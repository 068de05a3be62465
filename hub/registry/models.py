"""Registry models: who may see which data, for which project, until when.

Users, projects and datasets are named by validated slugs; grants by an opaque id. Every change to
these rows goes through the registry operations, which write an audit event in the same
transaction. Status and role columns admit exactly the values of hub.registry.vocabulary.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any, TypedDict

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.sql import false

from hub.kernel.clock import utcnow
from hub.kernel.db import Base, UTCDateTime
from hub.registry.vocabulary import (
    ApplicationStatus,
    DataForm,
    DatasetKind,
    GrantStatus,
    HealthCategory,
    PermitStatus,
    ProjectStatus,
    Purpose,
    Role,
    sql_in,
)


def _opaque(prefix: str) -> str:
    # Opaque, unguessable and short enough to type: a letter, "-" and 48 random bits in hex.
    return prefix + "-" + secrets.token_hex(6)


def is_opaque_id(value: str, prefix: str) -> bool:
    """Shaped like an id `_opaque(prefix)` makes: anything else names nothing (and is never looked up)."""
    head, _, tail = value.partition("-")
    return head == prefix and len(tail) == 12 and all(c in "0123456789abcdef" for c in tail)


def new_grant_id() -> str:
    return _opaque("g")


def new_application_id() -> str:
    return _opaque("a")


def new_permit_id() -> str:
    return _opaque("p")


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
    # Who they are at the institution's identity provider (OIDC `sub` or the claim the site names):
    # set by an administrator, never taken from an editable claim such as preferred_username.
    subject: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)

    def __repr__(self) -> str:
        return f"User({self.username!r})"


class Dataset(Base):
    """One version of a registered dataset; re-registering changed sources adds a new version."""

    __tablename__ = "datasets"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        CheckConstraint(sql_in("kind", DatasetKind), name="kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40), index=True)
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(300), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(16), default=DatasetKind.COHORT.value)
    custodian_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    tables: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # list of TableSpec
    identifier_column: Mapped[str] = mapped_column(String(200))
    # The table with one row per individual (identifier unique there), e.g. "patients".
    person_table: Mapped[str] = mapped_column(String(200))
    row_count: Mapped[int] = mapped_column(Integer)  # rows over all tables
    unique_individuals: Mapped[int] = mapped_column(Integer)
    # Catalogue facts computed at registration, e.g. {"min_typical_age": 21, "max_typical_age": 88}.
    profile: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Its EHDS Art. 51 categories (hub.registry.vocabulary.HealthCategory codes), as the custodian says.
    health_categories: Mapped[list[str]] = mapped_column(
        JSON, default=lambda: [HealthCategory.EHRS.value], server_default='["EHRS"]'
    )
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
    __table_args__ = (CheckConstraint(sql_in("status", ProjectStatus), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    purpose: Mapped[str] = mapped_column(Text, default="")
    lead_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(16), default=ProjectStatus.ACTIVE.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Per-project workspace limits overriding the defaults: {"mem": "4g", "cpu": 2.0, "pids": 512}.
    limits: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Per-project overrides of the disclosure-check defaults (egress.sdc.RuleConfig), e.g. {"threshold": 15}.
    sdc_config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Outputs must be reproduced by a re-run before release (or approved by both checkers as an override).
    require_reproduction: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    lead: Mapped[User] = relationship()
    memberships: Mapped[list[Membership]] = relationship(back_populates="project")
    grants: Mapped[list[Grant]] = relationship(back_populates="project")


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("user_id", "project_id", "role"),
        CheckConstraint(sql_in("role", Role), name="role"),
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
    __table_args__ = (CheckConstraint(sql_in("status", GrantStatus), name="status"),)

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
    status: Mapped[str] = mapped_column(String(16), default=GrantStatus.REQUESTED.value)
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Who approved or rejected, and when.
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    # The data permit that issued it (None: granted on the command line, before permits).
    permit_id: Mapped[str | None] = mapped_column(ForeignKey("permits.id"), nullable=True, index=True)

    project: Mapped[Project] = relationship(back_populates="grants")
    dataset: Mapped[Dataset] = relationship()
    requested_by: Mapped[User] = relationship(foreign_keys=[requested_by_id])
    approved_by: Mapped[User | None] = relationship(foreign_keys=[approved_by_id])
    revoked_by: Mapped[User | None] = relationship(foreign_keys=[revoked_by_id])


class DatasetRequest(TypedDict):
    """One dataset an application asks for."""

    dataset: str  # the catalogue name; the version is fixed when the permit is issued
    columns: dict[str, list[str]]  # {table: [columns]}
    justifications: dict[str, str]  # {"table.column": why}, required for every sensitive column


class Application(Base):
    """A data access application (EHDS Art. 67): one version of what a lead asks for, and why.

    A new project starts from version 1; asking an approved project for more data or time is a new
    version of its application (`previous_id` points back), decided like the first.
    """

    __tablename__ = "applications"
    __table_args__ = (
        CheckConstraint(sql_in("status", ApplicationStatus), name="status"),
        CheckConstraint(sql_in("purpose", Purpose), name="purpose"),
        CheckConstraint(sql_in("data_form", DataForm), name="data_form"),
    )

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_application_id)
    lead_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    project_slug: Mapped[str] = mapped_column(String(40), index=True)  # proposed, or the project's
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"), nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    previous_id: Mapped[str | None] = mapped_column(ForeignKey("applications.id"), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=ApplicationStatus.DRAFT.value, index=True)
    # Bumped by every change: a form carries the revision it was drawn from, so a decision or edit
    # made on a stale page is refused instead of overwriting what someone else did meanwhile.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    title: Mapped[str] = mapped_column(String(300), default="")
    purpose: Mapped[str] = mapped_column(String(16), default=Purpose.RESEARCH.value)
    description: Mapped[str] = mapped_column(Text, default="")
    benefit: Mapped[str] = mapped_column(Text, default="")
    data_form: Mapped[str] = mapped_column(String(16), default=DataForm.PSEUDONYMISED.value)
    data_form_reason: Mapped[str] = mapped_column(Text, default="")
    linkage: Mapped[str] = mapped_column(Text, default="")  # "" = no linkage wanted
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    researchers: Mapped[list[str]] = mapped_column(JSON, default=list)
    safeguards: Mapped[str] = mapped_column(Text, default="")
    ethics_ref: Mapped[str] = mapped_column(String(200), default="")
    datasets: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # list of DatasetRequest
    attachment_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    attachment_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)

    lead: Mapped[User] = relationship(foreign_keys=[lead_id])
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])
    project: Mapped[Project | None] = relationship()
    messages: Mapped[list[ApplicationMessage]] = relationship(
        back_populates="application", order_by="ApplicationMessage.id"
    )


class ApplicationMessage(Base):
    """The conversation on an application: questions, answers and the reasons for each decision."""

    __tablename__ = "application_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16))  # question, answer, return, reject, approve
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    application: Mapped[Application] = relationship(back_populates="messages")
    author: Mapped[User] = relationship()


class ApplicationAttachment(Base):
    """The protocol (a PDF), kept in the registry so a backup of the database keeps it too."""

    __tablename__ = "application_attachments"

    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"), primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)


class Permit(Base):
    """A data permit (EHDS Art. 68): the signed record of what a custodian approved, for how long."""

    __tablename__ = "permits"
    __table_args__ = (CheckConstraint(sql_in("status", PermitStatus), name="status"),)

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_permit_id)
    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=PermitStatus.ISSUED.value)
    issued_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claims: Mapped[dict[str, Any]] = mapped_column(JSON)  # what the token says, for pages and queries
    token: Mapped[str] = mapped_column(Text)  # the signed record (a JWT), verifiable offline

    application: Mapped[Application] = relationship()
    project: Mapped[Project] = relationship()
    issued_by: Mapped[User] = relationship()
