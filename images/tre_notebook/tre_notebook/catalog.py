"""The project catalogue: DuckDB views over the project's read-only release under /data."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

CATALOG_FILE = "catalog.duckdb"
CATALOG_ALIAS = "catalog"


def data_dir() -> Path:
    """Where the project's release is mounted (TRE_DATA_DIR, default /data)."""
    return Path(os.environ.get("TRE_DATA_DIR", "/data"))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(path: str | os.PathLike[str] | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the project catalogue attached read-only and selected.

    The main database is in memory, so temporary tables still work; the catalogue itself cannot
    be written. Relative file paths in the catalogue's views resolve against the data folder.
    Extension auto-install and auto-load are off: the workspace has no internet, and loading
    code from outside the image is not something a notebook should do silently.
    """
    catalog = Path(path) if path is not None else data_dir() / CATALOG_FILE
    if not catalog.is_file():
        raise FileNotFoundError(
            f"No project catalogue at {catalog}: is a release of this project published and mounted?"
        )
    con = duckdb.connect(
        ":memory:",
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
    )
    try:
        con.execute(f"SET file_search_path = {_quote(str(catalog.parent))}")
        con.execute(f"ATTACH {_quote(str(catalog))} AS {CATALOG_ALIAS} (READ_ONLY)")
        con.execute(f"USE {CATALOG_ALIAS}")
    except Exception:
        con.close()
        raise
    return con
