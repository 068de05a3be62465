"""The catalogue of audit actions: every event the TRE records has its name here, and only here.

`hub.kernel.audit.record` accepts nothing else, so a new kind of event is added to this list (and so
to the docs, which `tests/unit/test_docs.py` holds against it) before any code can write it.
"""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    # registry: users, datasets, projects, members, grants
    USER_ADD = "user.add"
    USER_DISABLE = "user.disable"
    USER_ENABLE = "user.enable"
    USER_ROLE = "user.role"
    USER_SUBJECT = "user.subject"
    DATASET_REGISTER = "dataset.register"
    PROJECT_CREATE = "project.create"
    PROJECT_SUSPEND = "project.suspend"
    PROJECT_RESUME = "project.resume"
    PROJECT_CLOSE = "project.close"
    PROJECT_LIMITS = "project.limits"
    PROJECT_SDC_RULES = "project.sdc_rules"
    PROJECT_REPRODUCTION = "project.reproduction"
    MEMBER_ADD = "member.add"
    MEMBER_REMOVE = "member.remove"
    CHECKER_ASSIGN = "checker.assign"
    CHECKER_REMOVE = "checker.remove"
    GRANT_REQUEST = "grant.request"
    GRANT_APPROVE = "grant.approve"
    GRANT_REJECT = "grant.reject"
    GRANT_REVOKE = "grant.revoke"
    PROJECT_EXTEND = "project.extend"  # a later version of its application moved the end date
    # data access applications and permits (hub.registry.applications)
    APPLICATION_CREATE = "application.create"
    APPLICATION_UPDATE = "application.update"
    APPLICATION_ATTACH = "application.attach"
    APPLICATION_SUBMIT = "application.submit"
    APPLICATION_QUESTION = "application.question"
    APPLICATION_ANSWER = "application.answer"
    APPLICATION_RETURN = "application.return"
    APPLICATION_REJECT = "application.reject"
    APPLICATION_APPROVE = "application.approve"
    APPLICATION_WITHDRAW = "application.withdraw"
    PERMIT_ISSUE = "permit.issue"
    PERMIT_SUPERSEDE = "permit.supersede"
    PERMIT_REVOKE = "permit.revoke"
    # provisioning
    PROJECT_PROVISION = "project.provision"
    RELEASE_DELETE = "release.delete"
    # sign-in and workspaces
    LOGIN_FAILED = "login.failed"
    LOGIN_LOCKED = "login.locked"
    LOGIN_REFUSED = "login.refused"
    WORKSPACE_START = "workspace.start"
    WORKSPACE_REFUSED = "workspace.refused"
    WORKSPACE_STOP = "workspace.stop"  # stopped because access was withdrawn or its data purged
    # jobs: notebooks run in containers of their own (hub.jobs)
    JOB_SUBMIT = "job.submit"
    JOB_START = "job.start"
    JOB_FINISH = "job.finish"
    JOB_CANCEL = "job.cancel"
    JOB_REFUSED = "job.refused"
    PROJECT_HOMES_PURGE = "project.homes_purge"  # a closed project's homes deleted
    # The guard on the browser channel: refusals (route, content, malformed kernel message), the
    # first cut of the day when a workspace's byte budget runs out, and uploads into a workspace.
    GUARD_REFUSED = "guard.refused"
    GUARD_BUDGET_CUT = "guard.budget_cut"
    GUARD_UPLOAD = "guard.upload"
    # egress: requests, files, reviews, releases
    EGRESS_REQUEST_CREATE = "egress.request.create"
    EGRESS_REQUEST_SUBMIT = "egress.request.submit"
    EGRESS_REQUEST_WITHDRAW = "egress.request.withdraw"
    EGRESS_REQUEST_VOTE = "egress.request.vote"  # the first vote moves a request under review
    EGRESS_REQUEST_RETURN = "egress.request.return"
    EGRESS_REQUEST_REJECT = "egress.request.reject"
    EGRESS_REQUEST_APPROVE = "egress.request.approve"
    EGRESS_REQUEST_RELEASE = "egress.request.release"
    EGRESS_REQUEST_REVOKE = "egress.request.revoke"
    EGRESS_GROUP_ADD = "egress.group.add"
    EGRESS_GROUP_UPDATE = "egress.group.update"
    EGRESS_FILE_ADD = "egress.file.add"
    EGRESS_FILE_UPDATE = "egress.file.update"
    EGRESS_FILE_REMOVE = "egress.file.remove"
    EGRESS_FILE_READ = "egress.file.read"  # a file's raw bytes left the service to a browser
    EGRESS_WORKSPACE_PREVIEW = "egress.workspace.preview"  # an author previewed a workspace file
    EGRESS_REVIEW_VOTE = "egress.review.vote"
    EGRESS_COMMENT_ADD = "egress.comment.add"
    EGRESS_RERUN_START = "egress.rerun.start"
    EGRESS_RERUN_FINISH = "egress.rerun.finish"
    EGRESS_RERUN_CANCEL = "egress.rerun.cancel"
    EGRESS_RELEASE_DOWNLOAD = "egress.release.download"
    # egress refusals: one per operation, so `--action egress.refused.` lists them all
    EGRESS_REFUSED_CREATE = "egress.refused.create"
    EGRESS_REFUSED_EDIT = "egress.refused.edit"
    EGRESS_REFUSED_ADD_FILE = "egress.refused.add_file"
    EGRESS_REFUSED_UPDATE_FILE = "egress.refused.update_file"
    EGRESS_REFUSED_REMOVE_FILE = "egress.refused.remove_file"
    EGRESS_REFUSED_PRECHECK = "egress.refused.precheck"
    EGRESS_REFUSED_SUBMIT = "egress.refused.submit"
    EGRESS_REFUSED_WITHDRAW = "egress.refused.withdraw"
    EGRESS_REFUSED_VOTE = "egress.refused.vote"
    EGRESS_REFUSED_COMMENT = "egress.refused.comment"
    EGRESS_REFUSED_RERUN = "egress.refused.rerun"
    EGRESS_REFUSED_RETURN = "egress.refused.return"
    EGRESS_REFUSED_REJECT = "egress.refused.reject"
    EGRESS_REFUSED_RELEASE = "egress.refused.release"
    EGRESS_REFUSED_DOWNLOAD = "egress.refused.download"
    EGRESS_REFUSED_REVOKE = "egress.refused.revoke"
    EGRESS_REFUSED_VIEW = "egress.refused.view"
    EGRESS_REFUSED_LIST_ALL = "egress.refused.list_all"
    EGRESS_REFUSED_WORKSPACE = "egress.refused.workspace"
    EGRESS_REFUSED_PREVIEW = "egress.refused.preview"
    EGRESS_REFUSED_AUDIT_LOG = "egress.refused.audit_log"
    EGRESS_REFUSED_CSRF = "egress.refused.csrf"
    PORTAL_REFUSED_CSRF = "portal.refused.csrf"
