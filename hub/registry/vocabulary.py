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


class ApplicationStatus(StrEnum):
    """Where a data access application is: with its lead, with the custodians, or decided."""

    DRAFT = "draft"  # the lead is writing it
    SUBMITTED = "submitted"  # in the custodians' queue
    QUESTIONS = "questions"  # a custodian asked; the lead answers and it goes back to the queue
    RETURNED = "returned"  # sent back for changes; the lead edits and submits again
    APPROVED = "approved"  # a data permit was issued
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


# The lead may change an application only while it is with them.
EDITABLE_APPLICATIONS = frozenset({ApplicationStatus.DRAFT, ApplicationStatus.RETURNED})
# Decided or given up: nothing more happens to it (a new version may follow).
FINAL_APPLICATIONS = frozenset(
    {ApplicationStatus.APPROVED, ApplicationStatus.REJECTED, ApplicationStatus.WITHDRAWN}
)


class Purpose(StrEnum):
    """The purposes for which health data may be used (EHDS Regulation (EU) 2025/327, Art. 53(1))."""

    PUBLIC_HEALTH = "art53-1-a"
    POLICY = "art53-1-b"
    STATISTICS = "art53-1-c"
    EDUCATION = "art53-1-d"
    RESEARCH = "art53-1-e"
    CARE_IMPROVEMENT = "art53-1-f"

    @property
    def label(self) -> str:
        return PURPOSE_LABELS[self]


PURPOSE_LABELS: dict[Purpose, str] = {
    Purpose.PUBLIC_HEALTH: "(a) Public interest in public and occupational health",
    Purpose.POLICY: "(b) Policy-making and regulatory activities of public sector bodies",
    Purpose.STATISTICS: "(c) Official statistics on the health or care sectors",
    Purpose.EDUCATION: "(d) Education or teaching in the health or care sectors",
    Purpose.RESEARCH: "(e) Scientific research in the health or care sectors",
    Purpose.CARE_IMPROVEMENT: "(f) Improving the delivery of care and the optimisation of treatment",
}


class DataForm(StrEnum):
    """How the data reach the researchers (EHDS Art. 66: anonymised unless pseudonymised is justified)."""

    ANONYMISED = "anonymised"
    PSEUDONYMISED = "pseudonymised"


class PermitStatus(StrEnum):
    ISSUED = "issued"
    SUPERSEDED = "superseded"  # a later version of the application was approved
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
