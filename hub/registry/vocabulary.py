"""The registry's vocabulary: statuses, kinds, roles and labels as enums.

The models' CHECK constraints, the rules, the command line and the web forms all take their values
from here, so a status is spelled once.
"""

from __future__ import annotations

import re
from enum import StrEnum

# Users, projects and datasets: 3-40 lowercase letters, digits and single hyphens. No "--": container
# names join user and project with it, and JupyterHub gives services the origin <name>--service.
SLUG_RE = re.compile(r"^[a-z](?:[a-z0-9]|-(?!-)){1,38}[a-z0-9]$")


def is_slug(value: str) -> bool:
    return bool(SLUG_RE.match(value))


class DatasetKind(StrEnum):
    COHORT = "cohort"  # research data
    OPTOUT = "optout"  # a national data opt-out list: governance data, never granted


class ProjectStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class Role(StrEnum):
    """A person's role in one project."""

    LEAD = "lead"
    RESEARCHER = "researcher"
    CHECKER = "checker"


# Members who work with the data: they open workspaces and author release requests.
MEMBER_ROLES = frozenset({Role.LEAD, Role.RESEARCHER})


class GlobalRole(StrEnum):
    """A role across the whole TRE, granted by an administrator."""

    ADMIN = "admin"
    CUSTODIAN = "custodian"


class GrantStatus(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    REVOKED = "revoked"


class Sensitivity(StrEnum):
    IDENTIFIER = "identifier"
    QUASI_IDENTIFIER = "quasi-identifier"
    SENSITIVE = "sensitive"
    OTHER = "other"


class StatusChange(StrEnum):
    """What an administrator can do to a project's status."""

    SUSPEND = "suspend"
    RESUME = "resume"
    CLOSE = "close"


def sql_in(column: str, values: type[StrEnum]) -> str:
    """A CHECK constraint body that admits exactly the enum's values."""
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"
