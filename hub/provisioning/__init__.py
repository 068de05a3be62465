"""Provisioning: per-project data releases (see builder.py for the layout and the rules).

`build_release(project_dir, spec)` is the pure builder; `provision_project(settings, slug, actor)`
reads a project's grants from the registry, builds, and audits the result; `withdraw` holds the
operations that take data away (revoke a grant, close a project) and rebuild at once.
"""

from hub.provisioning.builder import (
    CATALOG_STORAGE_VERSION,
    build_release,
    current_release,
    read_manifest,
    releases,
)
from hub.provisioning.provision import provision_project
from hub.provisioning.spec import (
    DatasetSpec,
    ProvisioningError,
    ReleaseResult,
    ReleaseSpec,
    SourceTable,
    StepCallback,
)

__all__ = [
    "CATALOG_STORAGE_VERSION",
    "DatasetSpec",
    "ProvisioningError",
    "ReleaseResult",
    "ReleaseSpec",
    "SourceTable",
    "StepCallback",
    "build_release",
    "current_release",
    "provision_project",
    "read_manifest",
    "releases",
]
