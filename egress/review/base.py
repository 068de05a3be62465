"""What every egress operation stands on: the deployment's settings, blob store and signing key,
read and write sessions, and the one mechanism that audits refusals.

A refused operation rolls back; `refusals_audited` then records the refusal in a transaction of its
own, so every refusal leaves a trace whichever operation refused.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy.orm import Session

from egress.review.errors import REFUSALS
from egress.review.storage import BlobStore
from hub.kernel import audit
from hub.kernel.audit_actions import AuditAction
from hub.kernel.db import session_scope
from hub.kernel.settings import Settings
from hub.kernel.signing import Signer

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class EgressContext:
    settings: Settings
    store: BlobStore = field(init=False)
    signer: Signer = field(init=False)

    def __post_init__(self) -> None:
        self.store = BlobStore(self.settings.egress_dir)
        self.signer = Signer(self.settings.keys_dir)

    def reading(self) -> AbstractContextManager[Session]:
        return session_scope(self.settings, readonly=True)

    def writing(self) -> AbstractContextManager[Session]:
        return session_scope(self.settings)

    def refusal(
        self, who: str, action: AuditAction, object_type: str, object_id: object, reason: str
    ) -> None:
        with self.writing() as s:
            audit.record(s, who, action, object_type, str(object_id), {"reason": reason})


class HasContext(Protocol):
    ctx: EgressContext


def refusals_audited(
    action: AuditAction, object_type: str, object_id: str | None = None
) -> Callable[[Callable[Concatenate[Any, str, P], T]], Callable[Concatenate[Any, str, P], T]]:
    """Audit a refusal of the decorated operation `(self, who, target, ...)` under `action`.

    The audited object is `object_id` if given, else the operation's first argument after `who`
    (a request, file or group id, or a project slug).
    """

    def wrap(method: Callable[Concatenate[Any, str, P], T]) -> Callable[Concatenate[Any, str, P], T]:
        @functools.wraps(method)
        def run(self: HasContext, who: str, *args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return method(self, who, *args, **kwargs)
            except REFUSALS as exc:
                target = object_id if object_id is not None else (args[0] if args else "-")
                self.ctx.refusal(who, action, object_type, target, str(exc))
                raise

        return run

    return wrap
