"""What every TRE web service shares: sign-in through the hub, strict headers, CSRF rules, and the
stylesheet (STATIC), so the egress service and the portal look and behave alike."""

from pathlib import Path

STATIC = Path(__file__).parent / "static"
