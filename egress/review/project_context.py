"""What the SDC engine should know about a project beyond the files: its rule overrides, its earlier
pending and released outputs (for differencing) and its pseudonyms (for microdata detection).

Used by the egress service on pre-check and submit, and by `tre egress check --project`. When the
registry cannot tell (unreadable, not migrated, unknown project) the checks still run, but the
context says so and the engine makes every file `fail` with a "context" finding: a hiccup can never
give a quieter verdict than the project's own rules would.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from egress.review.models import EgressFile, EgressRequest
from egress.review.storage import BlobStore
from egress.review.workflow import FileKind, State
from egress.sdc import CheckContext, RuleConfig
from egress.sdc.model import variable_name
from hub.kernel.db import session_scope
from hub.kernel.settings import Settings
from hub.provisioning import read_manifest
from hub.registry.models import Project

# Outputs a new file is compared with (differencing): everything still pending or already out.
PENDING_OR_RELEASED = (State.SUBMITTED, State.UNDER_REVIEW, State.RETURNED, State.APPROVED, State.RELEASED)


@dataclass
class ProjectContext:
    rules: RuleConfig = field(default_factory=RuleConfig)
    overrides: dict[str, Any] = field(default_factory=dict)
    context: CheckContext = field(default_factory=CheckContext)


def project_context(
    settings: Settings, project: str, scratch: Path, leave_out: Container[int] = ()
) -> ProjectContext:
    """A project's SDC rules, earlier outputs and pseudonyms, or defaults marked unavailable.

    Earlier (pending and released) outputs are linked under their names in `scratch` so their format
    is known (files whose id is in `leave_out`, a request's own, are not); pseudonyms are looked up
    in the columns the current release's manifest says it pseudonymised.
    """
    try:
        with session_scope(settings, readonly=True) as session:
            row = session.execute(select(Project).where(Project.slug == project)).scalar_one_or_none()
            if row is None:
                raise LookupError(f"there is no project {project!r}")
            overrides = dict(row.sdc_config or {})
            files = session.execute(
                select(EgressFile.id, EgressFile.name, EgressFile.sha256)
                .join(EgressRequest, EgressFile.request_id == EgressRequest.id)
                .where(EgressRequest.project_slug == project, EgressRequest.state.in_(PENDING_OR_RELEASED))
                .where(EgressFile.removed_at.is_(None), EgressFile.kind == FileKind.OUTPUT)
            ).all()
        rules = RuleConfig.from_dict(overrides)
        release = settings.current_release(project).resolve()
        manifest = read_manifest(settings.project_dir(project)) or {}
        columns = [
            (release / "data" / ds["name"] / f"{t['name']}.parquet", c)
            for ds in manifest.get("datasets", [])
            for t in ds["tables"]
            for c in t["pseudonymised"]
        ]
    except (SQLAlchemyError, LookupError, OSError, TypeError, ValueError, KeyError) as exc:
        return ProjectContext(context=CheckContext(unavailable=f"{type(exc).__name__}: {exc}"))
    store, earlier = BlobStore(settings.egress_dir), []
    for fid, name, sha in files:
        if fid in leave_out:
            continue
        (scratch / str(fid)).mkdir()
        (scratch / str(fid) / name).symlink_to(store.path(sha))
        earlier.append(scratch / str(fid) / name)
    context = CheckContext(
        earlier=earlier,
        identifiers=pseudonym_lookup(columns) if columns else None,
        bounds=variable_bounds(manifest),
    )
    return ProjectContext(rules, overrides, context)


def variable_bounds(manifest: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """The release's numeric bounds by variable name; a name in several tables gets the widest."""
    found: dict[str, tuple[float, float]] = {}
    for key, (low, high) in (manifest.get("bounds") or {}).items():
        name = variable_name(key.rsplit("/", 1)[-1])
        if name in found:
            low, high = min(low, found[name][0]), max(high, found[name][1])
        found[name] = (float(low), float(high))
    return found


def pseudonym_lookup(columns: list[tuple[Path, str]]) -> Callable[[Collection[str]], set[str]]:
    """Which candidate strings are values of the given (Parquet file, column) pairs, found by DuckDB."""

    def lookup(candidates: Collection[str]) -> set[str]:
        con = duckdb.connect()
        con.register("c", pd.DataFrame({"v": list(candidates)}, dtype=object))
        found: set[str] = set()
        for path, col in columns:
            if path.is_file():
                q = f'SELECT DISTINCT v FROM c WHERE v IN (SELECT "{col}"::VARCHAR FROM read_parquet(?))'
                found.update(r[0] for r in con.execute(q, [str(path)]).fetchall())
        con.close()
        return found

    return lookup
