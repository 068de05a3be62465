"""Enforcement: what a registry decision must do to the running TRE, whichever interface made it.

A revoked grant or a closed project rebuilds the release without the withdrawn data and deletes
the old releases (`withdraw`). The command line and the portal call these operations, never the
registry change alone, so no caller can skip the purge.
"""

from hub.enforcement.withdraw import Withdrawal, WithdrawalIncomplete, close_project, revoke_grant

__all__ = ["Withdrawal", "WithdrawalIncomplete", "close_project", "revoke_grant"]
