"""Statistical disclosure control: the checks behind every release (pure library, no web code).

``check_paths(paths, config=RuleConfig(...), context=CheckContext(...))`` returns the report
document of docs/architecture.md; it raises FileNotFoundError for a missing path and otherwise
never fails on a file (what it cannot read or check is ``review``).

Modules: ``model`` (findings, settings, context, parsed outputs), ``parse`` (files -> tables,
regressions, text, opaque items), ``structure`` (a DataFrame's labels, statistics, margins, counts),
``rules`` (per-table rules), ``differencing`` (across tables and earlier outputs), ``metadata``
(``<file>.sdc.json`` written by ``tre_notebook.sdc``: used only when consistent), ``acro`` (ACRO's
``results.json``), ``engine`` (orchestration).
"""

from egress.sdc.engine import check_paths
from egress.sdc.model import CheckContext, Finding, RuleConfig

__all__ = ["CheckContext", "Finding", "RuleConfig", "check_paths"]
