"""What the SDC engine should know about a project beyond the files: its rule overrides, its earlier
pending and released outputs (for differencing) and its pseudonyms (for microdata detection).

Used by the egress service on pre-check and submit, and by `tre egress check --project`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from egress.sdc import CheckContext

# Outputs a new file is compared with (differencing): everything still pending or already out.
_PENDING_OR_RELEASED = ("submitted", "under_review", "returned", "approved", "released")


def project_context(project: str, scratch: Path) -> tuple[dict[str, Any], CheckContext | None]:
    """A project's SDC overrides, earlier outputs and pseudonyms, when the registry can tell us.

    Earlier (pending and released) outputs are linked under their names in ``scratch`` so their format
    is known; pseudonyms are looked up in the columns the current release's manifest says it
    pseudonymised. Without a registry (or the project) the check runs with defaults and says so.
    """
    from egress.sdc import CheckContext

    try:
        from egress.models import EgressFile, EgressRequest
        from egress.storage import BlobStore
        from hub.db import session_scope
        from hub.models import Project
        from hub.provisioning import read_manifest
        from hub.settings import get_settings

        settings = get_settings()
        with session_scope(readonly=True) as session:
            row = session.query(Project).filter_by(slug=project).one_or_none()
            if row is None:
                raise LookupError(f"no project {project!r}")
            overrides = dict(row.sdc_config or {})
            files = (
                session.query(EgressFile.id, EgressFile.name, EgressFile.sha256)
                .join(EgressRequest, EgressFile.request_id == EgressRequest.id)
                .filter(EgressRequest.project_slug == project, EgressRequest.state.in_(_PENDING_OR_RELEASED))
                .filter(EgressFile.removed_at.is_(None), EgressFile.kind == "output")
                .all()
            )
        store, earlier = BlobStore(settings.egress_dir), []
        for fid, name, sha in files:
            (scratch / str(fid)).mkdir()
            (scratch / str(fid) / name).symlink_to(store.path(sha))
            earlier.append(scratch / str(fid) / name)
        release = settings.current_release(project).resolve()
        manifest = read_manifest(settings.project_dir(project)) or {}
        columns = [
            (release / "data" / ds["name"] / f"{t['name']}.parquet", c)
            for ds in manifest.get("datasets", [])
            for t in ds["tables"]
            for c in t["pseudonymised"]
        ]
    except Exception as exc:  # no registry, not migrated, unknown project: defaults, said out loud
        from hub.cli._common import err_console

        err_console.print(f"[dim]note: project context unavailable ({exc}); using defaults[/]")
        return {}, None

    return overrides, CheckContext(
        earlier=earlier, identifiers=pseudonym_lookup(columns) if columns else None
    )


def pseudonym_lookup(columns: list[tuple[Path, str]]) -> Callable[[Collection[str]], set[str]]:
    """Which candidate strings are values of the given (Parquet file, column) pairs, found by DuckDB."""

    def lookup(candidates: Collection[str]) -> set[str]:
        import duckdb
        import pandas as pd

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
