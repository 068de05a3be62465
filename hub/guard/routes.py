"""Which requests to a workspace pass the guard, and what the browser may read: pure rules.

Everything under `/user/<user>/<project>/` is classified before it reaches the container:

- STATIC: the image's own assets (JupyterLab, extensions, themes, kernel logos), read-only in the
  image (the origins issue), streamed and not counted against the daily budget;
- CONTENTS: the contents API, whose file reads are inspected (`read_decision`);
- KERNEL_CHANNELS: a kernel's websocket, whose messages the guard reads (code log, budget);
- API: the rest of what JupyterLab needs, counted against the budget;
- refused: everything else (`/files`, `/view`, `/nbconvert`, terminals, extension manager, ...),
  with the reason shown to the researcher and written to the audit log.

Nothing here trusts the container: a file's kind is decided from its name *and* from what the
server returned, and sizes from the bytes that arrived.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath

PREFIX_RE = re.compile(
    r"^/user/(?P<user>[a-z0-9][a-z0-9_.-]*)/(?P<project>[a-z0-9][a-z0-9_.-]*)(?P<rest>/.*)?$"
)


class Kind(StrEnum):
    STATIC = "static"
    CONTENTS = "contents"
    KERNEL_CHANNELS = "kernel-channels"
    EVENTS = "events"
    API = "api"
    PAGE = "page"
    NO_EXPORTERS = "no-exporters"  # JupyterLab lists export formats: the guard answers "none"


@dataclass(frozen=True)
class Target:
    user: str
    project: str
    rest: str  # the path below the workspace prefix, without its leading "/"


@dataclass(frozen=True)
class Route:
    kind: Kind | None  # None: refused
    reason: str = ""  # why it is refused, for the researcher and the audit log


def parse_target(path: str) -> Target | None:
    """The workspace a request path names, or None when it names none."""
    m = PREFIX_RE.match(path)
    if not m or "--" in m["user"] or "--" in m["project"]:
        return None
    return Target(m["user"], m["project"], (m["rest"] or "/")[1:])


HOW_TO_EXPORT = (
    "Work with data inside a notebook; to take a result out of the TRE, ask for a release "
    "(Release requests and reviews, on the hub's home page)."
)

# What JupyterLab asks for, by path (below the workspace prefix) and method.
_READ = frozenset({"GET", "HEAD"})
_ANY = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
_RULES: list[tuple[re.Pattern[str], frozenset[str], Kind]] = [
    (re.compile(r"^static/"), _READ, Kind.STATIC),
    (re.compile(r"^lab/extensions/[^?]+$"), _READ, Kind.STATIC),
    (re.compile(r"^lab/api/themes/"), _READ, Kind.STATIC),
    (re.compile(r"^kernelspecs/[^/]+/[^/]+$"), _READ, Kind.STATIC),
    (re.compile(r"^custom/custom\.css$"), _READ, Kind.STATIC),
    (re.compile(r"^(lab|lab/tree(/.*)?|lab/workspaces(/.*)?|tree|tree/.*|)$"), _READ, Kind.PAGE),
    # A file's checkpoints are ids and times, never content (restoring one happens in the workspace).
    (re.compile(r"^api/contents/.+/checkpoints(/[^/]+)?$"), _ANY, Kind.API),
    (re.compile(r"^api/contents(/.*)?$"), _ANY, Kind.CONTENTS),
    (re.compile(r"^api/nbconvert$"), _READ, Kind.NO_EXPORTERS),
    (re.compile(r"^api/kernels/[0-9a-f-]{36}/channels$"), _READ, Kind.KERNEL_CHANNELS),
    (re.compile(r"^api/events/subscribe$"), _READ, Kind.EVENTS),
    (re.compile(r"^api/kernels(/[0-9a-f-]{36}(/(interrupt|restart))?)?$"), _ANY, Kind.API),
    (re.compile(r"^api/sessions(/[0-9a-f-]{36})?$"), _ANY, Kind.API),
    (re.compile(r"^api/kernelspecs(/[^/]+)?$"), _READ, Kind.API),
    (re.compile(r"^api(/status|/me|/shutdown)?$"), frozenset({"GET", "HEAD", "POST"}), Kind.API),
    (re.compile(r"^api/config/[a-z_]+$"), _READ, Kind.API),
    (re.compile(r"^lab/api/(settings|workspaces|translations)(/.*)?$"), _ANY, Kind.API),
    (re.compile(r"^lab/api/build$"), _READ, Kind.API),  # lab asks whether a rebuild is due
    (re.compile(r"^lsp/status$"), _READ, Kind.API),  # jupyter-lsp: no language servers installed
    (re.compile(r"^(oauth_callback|logout)$"), _READ, Kind.PAGE),
]
# Refused with a reason of their own (the rest: "not something JupyterLab in the TRE needs").
_REFUSED: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^(files|view)(/|$)"), "downloading files from the workspace"),
    (re.compile(r"^(api/nbconvert/|nbconvert(/|$))"), "exporting notebooks"),
    (re.compile(r"^(api/)?terminals(/|$)"), "terminals"),
    (re.compile(r"^lab/api/(extensions|plugins)(/|$)"), "managing JupyterLab extensions"),
]


_ENCODED_SEPARATOR = re.compile(r"%(2f|5c|2e)", re.IGNORECASE)
# The notebook's own bookkeeping: what may still pass (and count) once the day's budget is spent.
_CONTROL = re.compile(r"^api(/status|/me|/kernelspecs(/[^/]+)?|/kernels(/.*)?|/sessions(/.*)?)?$")


def is_control(rest: str) -> bool:
    return bool(_CONTROL.match(rest))


def path_trick(path: str) -> str | None:
    """Why `path` could mean another path to the server behind (dot segments, backslashes, encoded
    separators), or None. A path is checked in the form it is passed on in."""
    if "\\" in path or any(part in (".", "..") for part in path.split("/")):
        return "a path with '.' or '..' components"
    if _ENCODED_SEPARATOR.search(path):
        return "an encoded '/', '\\' or '.' in the path"
    return None


def classify(method: str, rest: str) -> Route:
    """The route of a request below a workspace prefix (query strings are not part of `rest`)."""
    if trick := path_trick(rest):
        return Route(None, trick)
    for pattern, reason in _REFUSED:
        if pattern.match(rest):
            return Route(None, reason)
    for pattern, methods, kind in _RULES:
        if pattern.match(rest):
            if method.upper() not in methods:
                return Route(None, f"{method.upper()} on this path")
            return Route(kind)
    return Route(None, "a path JupyterLab in the TRE does not use")


# --- contents -------------------------------------------------------------------------------------

# Data and archive formats are never sent to the browser, whatever their size (and whatever the
# server says they are: a name ending this way is refused before the container is asked).
DATA_SUFFIXES = frozenset(
    {
        *(".parquet", ".pq", ".duckdb", ".ddb", ".db", ".sqlite", ".sqlite3", ".arrow", ".feather", ".ipc"),
        *(".orc", ".avro", ".h5", ".hdf5", ".hdf", ".nc", ".npy", ".npz", ".pkl", ".pickle", ".joblib"),
        *(".rds", ".rdata", ".rda", ".sav", ".dta", ".sas7bdat", ".xpt", ".xlsx", ".xlsm", ".xls", ".ods"),
        *(".zip", ".gz", ".tgz", ".tar", ".bz2", ".xz", ".7z", ".zst", ".rar", ".lz4", ".br", ".whl"),
        *(".egg", ".jar"),
    }
)
# Binary files the browser may show (figures); everything else binary is refused.
IMAGE_MIMETYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_JSON_OVERHEAD = 64 * 1024


@dataclass(frozen=True)
class ReadDecision:
    allowed: bool
    reason: str = ""


def suffix_refusal(path: str) -> str | None:
    """Why a contents path is refused by its name alone (a data or archive format), else None."""
    suffixes = [s.lower() for s in PurePosixPath(path.rstrip("/")).suffixes]
    hit = next((s for s in suffixes if s in DATA_SUFFIXES), None)
    if hit:
        return f"{hit} files are data: the browser does not get them"
    return None


def body_cap(read_limit: int) -> int:
    """The most bytes of a contents response the guard reads before refusing it as too large.

    JSON escaping can make text up to six times longer (`\\u0000`); the model's own `size`, checked
    after parsing, is what the limit is about."""
    return 6 * read_limit + _JSON_OVERHEAD


def read_decision(model: object, read_limit: int) -> ReadDecision:
    """May the browser get this contents model (the server's JSON answer to a read)?"""
    if not isinstance(model, dict):
        return ReadDecision(False, "an answer the guard cannot read")
    kind, fmt, content = model.get("type"), model.get("format"), model.get("content")
    name = str(model.get("path") or model.get("name") or "")
    if content is None:
        return ReadDecision(True)  # metadata only (content=0)
    if kind == "directory":
        return ReadDecision(True)
    refused = suffix_refusal(name)
    if refused:
        return ReadDecision(False, refused)
    size = model.get("size")
    measured = len(content.encode("utf-8", "surrogatepass")) if isinstance(content, str) else None
    sizes = [s for s in (size, measured) if isinstance(s, int)]
    if kind == "notebook" and fmt == "json":
        # The notebook's bytes on disk (size) bound it; its JSON content came parsed.
        if isinstance(size, int) and size > read_limit:
            return ReadDecision(False, _too_large(size, read_limit))
        return ReadDecision(True)
    if kind != "file" or fmt not in ("text", "base64"):
        return ReadDecision(False, f"a {kind!r} in {fmt!r} format")
    if fmt == "base64" and model.get("mimetype") not in IMAGE_MIMETYPES:
        return ReadDecision(False, "binary files other than images stay in the workspace")
    largest = max(sizes, default=0)
    if largest > read_limit:
        return ReadDecision(False, _too_large(largest, read_limit))
    return ReadDecision(True)


def _too_large(size: int, limit: int) -> str:
    return f"the file is {_mb(size)}, more than the {_mb(limit)} the browser may read"


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 100_000 else f"{n / 1000:.0f} kB"


def refusal_message(reason: str) -> str:
    return f"The TRE's guard refused this: {reason}. {HOW_TO_EXPORT}"
