"""Enforcement: what a registry decision must do to the running TRE, whichever interface made it.

`withdraw` holds the operations that take access away (revoke a grant, close or suspend a project,
remove a member, disable a user): the registry change, then its effects at once. `workspaces`
stops the running workspaces that may no longer run and purges a closed project's homes; the
sweeper (`python -m hub.enforcement`, a hub service) repeats that check for expiries. The command
line and the portal call these operations, never the registry change alone.
"""

from hub.enforcement.withdraw import (
    Withdrawal,
    WithdrawalIncomplete,
    close_project,
    disable_user,
    remove_member,
    revoke_grant,
    suspend_project,
)
from hub.enforcement.workspaces import StoppedWorkspace, enforce

__all__ = [
    "StoppedWorkspace",
    "Withdrawal",
    "WithdrawalIncomplete",
    "close_project",
    "disable_user",
    "enforce",
    "remove_member",
    "revoke_grant",
    "suspend_project",
]
