"""`tre hub`'s supervisor (hub.workspaces.supervisor) with a stand-in hub: what it does between a
hub's death and the next start."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hub.workspaces.supervisor import PROXY_PID_FILE

# Each start records whether the previous hub's proxy still runs (a zombie counts as gone), then
# dies at once: after three quick exits the supervisor gives up.
HUB = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    pid = Path("proxy.pid").read_text().strip()
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        state = "gone"
    with open("starts", "a") as fh:
        fh.write(("gone" if state in ("gone", "Z") else "running") + "\\n")
    sys.exit(3)
    """
)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_dead_hubs_proxy_is_stopped_before_the_next_hub_starts(tmp_path):
    """JupyterHub would stop it too, but only after waiting 2 s: every restart would take longer."""
    proxy = subprocess.Popen(["bash", "-c", "exec -a configurable-http-proxy sleep 60"])
    try:
        (tmp_path / PROXY_PID_FILE).write_text(str(proxy.pid))
        supervise = (
            "import sys\n"
            "from pathlib import Path\n"
            "from hub.workspaces.supervisor import Supervisor\n"
            f"s = Supervisor([sys.executable, '-c', {HUB!r}], {{}}, Path({str(tmp_path)!r}), say=print)\n"
            "sys.exit(s.run())\n"
        )
        run = subprocess.run(
            [sys.executable, "-c", supervise], capture_output=True, text=True, timeout=60, check=False
        )
        assert run.returncode == 1, run.stdout + run.stderr  # gave up after three quick exits
        assert "giving up" in run.stdout
        starts = (tmp_path / "starts").read_text().split()
        assert starts == ["running", "gone", "gone"]
    finally:
        proxy.kill()
        proxy.wait()
