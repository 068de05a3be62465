"""Running the automated disclosure checks (egress.sdc) on a request's stored files.

The engine reads a file's type from its name, so each blob is linked under its name in a scratch
folder first; the project's context (rules, earlier outputs, pseudonyms) comes from the same
helper as `tre egress check --project`.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from egress.review.base import EgressContext
from egress.review.models import EgressFile
from egress.review.project_context import project_context
from egress.review.workflow import FileKind
from egress.sdc import check_paths


@dataclass(frozen=True)
class StoredFile:
    id: int
    name: str
    sha256: str
    supporting: bool = False  # checked and shown, never released, so left out of differencing

    @classmethod
    def of(cls, f: EgressFile) -> StoredFile:
        return cls(f.id, f.name, f.sha256, supporting=f.kind == FileKind.SUPPORTING)


def run_checks(
    ctx: EgressContext,
    project: str,
    files: Sequence[StoredFile],
    trusted_metadata: dict[int, bytes] | None = None,
) -> dict[int, dict[str, Any]]:
    """{file id: {"verdict", "findings"}} for the stored blobs, with the project's context.

    The request's own earlier versions are left out of "earlier", so a resubmitted file is not
    compared with itself. `trusted_metadata` (file id -> `.sdc.json` bytes a re-run wrote, not the
    researcher) takes the place of any submitted metadata for that file.
    """
    with tempfile.TemporaryDirectory(prefix="egress-check-") as tmp:
        paths = []
        for f in files:
            p = Path(tmp) / "files" / str(f.id) / f.name
            p.parent.mkdir(parents=True)
            try:
                os.link(ctx.store.path(f.sha256), p)
            except OSError:  # another filesystem: copy instead
                p.write_bytes(ctx.store.read(f.sha256))
            paths.append(str(p))
        scratch = Path(tmp) / "context"
        scratch.mkdir()
        found = project_context(ctx.settings, project, scratch, leave_out={f.id for f in files})
        supporting = frozenset(p for f, p in zip(files, paths, strict=True) if f.supporting)
        trusted = {}
        for f, p in zip(files, paths, strict=True):
            if f.id in (trusted_metadata or {}):
                sidecar = Path(tmp) / "trusted" / str(f.id) / f"{f.name}.sdc.json"
                sidecar.parent.mkdir(parents=True)
                sidecar.write_bytes(trusted_metadata[f.id])
                trusted[p] = sidecar
        context = dataclasses.replace(
            found.context, supporting=supporting, sidecars={**found.context.sidecars, **trusted}
        )
        report = check_paths(paths, config=found.rules, context=context)
    by_path = {r["path"]: r for r in report.get("files", [])}
    out = {}
    for f, p in zip(files, paths, strict=True):
        r = by_path.get(p) or {"verdict": "review", "findings": []}
        out[f.id] = {"verdict": r.get("verdict", "review"), "findings": r.get("findings", [])}
    return out
