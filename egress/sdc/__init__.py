"""Statistical disclosure control: the checks behind every release (pure library, no web code).

``check_paths(paths, config=..., context=...)`` returns DESIGN.md's report document.
"""

from egress.sdc.engine import check_paths
from egress.sdc.model import CheckContext, Finding, RuleConfig

__all__ = ["CheckContext", "Finding", "RuleConfig", "check_paths"]
