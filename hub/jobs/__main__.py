"""`python -m hub.jobs`: the job runner, a JupyterHub managed service (hub.jobs.runner)."""

from __future__ import annotations

import logging

from hub.jobs.runner import JobRunner
from hub.kernel.lifecycle import die_with_parent
from hub.kernel.settings import get_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s %(asctime)s tre-jobs] %(message)s")
    die_with_parent()
    JobRunner(get_settings()).run_forever()


if __name__ == "__main__":
    main()
