"""The registry domain: users, datasets, projects, members and grants, and the rules over them.

Modules: `vocabulary` (statuses and roles as enums), `models` (tables), `permissions` (pure rules:
who may do what), `access` (what a person may open now), `lookup` (finding objects, the acting
person), `users`, `datasets` (+ `intake`: reading sources), `projects`, `grants` (the operations:
rule check, change, audit event, all in the caller's transaction), `catalogue` (HealthDCAT-AP).

Callers open a `hub.kernel.db.session_scope()` and call the operations named here; a RegistryError
or NotAllowed leaves the transaction to be rolled back, so nothing is half-written.
"""

from hub.registry.datasets import SourceFile, register_dataset, verify_dataset_sources
from hub.registry.errors import RegistryError
from hub.registry.grants import decide_grant, request_grant, revoke_grant
from hub.registry.lookup import (
    authorise,
    find_user,
    get_dataset,
    get_grant,
    get_project,
    get_user,
    require_aware,
    require_slug,
)
from hub.registry.permissions import NotAllowed
from hub.registry.projects import (
    add_member,
    change_project_status,
    create_project,
    remove_member,
    set_project_limits,
    set_project_sdc_rules,
    set_reproduction_rule,
)
from hub.registry.users import add_user, set_user_disabled, set_user_role, set_user_subject

__all__ = [
    "NotAllowed",
    "RegistryError",
    "SourceFile",
    "add_member",
    "add_user",
    "authorise",
    "change_project_status",
    "create_project",
    "decide_grant",
    "find_user",
    "get_dataset",
    "get_grant",
    "get_project",
    "get_user",
    "register_dataset",
    "remove_member",
    "request_grant",
    "require_aware",
    "require_slug",
    "revoke_grant",
    "set_project_limits",
    "set_project_sdc_rules",
    "set_reproduction_rule",
    "set_user_disabled",
    "set_user_role",
    "set_user_subject",
    "verify_dataset_sources",
]
