"""`python -m hub.enforcement`: the sweeper, a JupyterHub managed service.

Every `TRE_SWEEP_SECONDS` it stops the workspaces that may no longer run. Registry operations stop
theirs at once; the sweeper catches what only time changes (a project or grant expiring) and any
change made while the hub was down.
"""

from __future__ import annotations

import logging
import time

from hub.enforcement.workspaces import enforce
from hub.kernel.lifecycle import die_with_parent
from hub.kernel.settings import get_settings
from hub.workspaces.hub_api import HubAPI

log = logging.getLogger("tre.sweeper")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s %(asctime)s tre-sweeper] %(message)s")
    die_with_parent()
    settings = get_settings()  # JupyterHub starts the service with the TRE's settings in its environment
    with HubAPI.for_service() as hub:
        while True:
            try:
                for s in enforce(settings, "tre-sweeper", "periodic check", hub=hub):
                    log.info("stopped %s/%s: %s", s.user, s.project, s.reason)
            except Exception:  # one failed round must not end the sweeps: log it, try again
                log.exception("sweep failed")
            time.sleep(settings.sweep_seconds)


if __name__ == "__main__":
    main()
