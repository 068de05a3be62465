"""Helpers available inside every TRE workspace.

`connect()` opens the project's data catalogue (read-only); `tre_notebook.sdc` helps check that
an output is safe to release before asking for its release.
"""

from tre_notebook.catalog import connect, data_dir

__all__ = ["connect", "data_dir"]
