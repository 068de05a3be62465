"""What the egress operations raise; the web layer turns each into its HTTP status."""

from __future__ import annotations

from egress.review.storage import Refused
from hub.kernel.signing import InvalidRecord


class EgressError(Exception):
    status = 400


class BadInput(EgressError):
    status = 422


class Denied(EgressError):
    status = 403


class NotFound(EgressError):
    status = 404


class Conflict(EgressError):
    status = 409


# Refusals: each is audited (hub.kernel.audit) before it reaches the caller. A missing object is not.
REFUSALS = (Denied, Conflict, BadInput, Refused, InvalidRecord)
