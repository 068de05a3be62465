"""A sealed notebook run (hub.host.sealed.run_notebook) on the real notebook image: it reads the
release at /data, takes parameters, writes its outputs into a scratch home, and cannot reach any
network, change the data or run past its time limit."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hub.host import swarm
from hub.host.sealed import SealedRunError, run_notebook
from tests.fixtures_hub import ENGINES
from tests.fixtures_kernel import notebook_bytes as notebook

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module", params=ENGINES)
def on(request) -> dict:
    """Where the run goes: a container on this engine, or a job service on the swarm's sealed network."""
    return {"swarm_network": swarm.sealed_runs_on(request.getfixturevalue(request.param).settings)}


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("release")
    (root / "data").mkdir()
    pq.write_table(
        pa.table({"region": ["N", "N", "S"], "hba1c": [50.0, 60.0, 40.0]}), root / "data" / "labs.parquet"
    )
    for path in (root, root / "data"):  # readable by the workspace user, as provisioning leaves it
        path.chmod(0o755)
    (root / "data" / "labs.parquet").chmod(0o644)
    return root


def test_a_notebook_reads_the_release_takes_parameters_and_writes_its_outputs(
    release, tmp_path, hub_image, on
):
    nb = notebook(
        "import os, duckdb\nos.makedirs('out', exist_ok=True)",
        "duckdb.sql(f\"COPY (SELECT region, count(*) AS n FROM '/data/data/labs.parquet' "
        "WHERE hba1c >= {threshold} GROUP BY region ORDER BY region) TO 'out/counts.csv' (HEADER)\")",
        parameters="threshold = 0",
    )
    result = run_notebook(
        hub_image, release, {"analysis/make.ipynb": nb}, "analysis/make.ipynb", tmp_path / "run",
        parameters={"threshold": 45}, **on,
    )  # fmt: skip
    assert result.ok, result.log
    assert result.files["analysis/out/counts.csv"] == b"region,n\nN,2\n"  # the parameter took effect
    assert result.executed and b"threshold = 45" in result.executed
    assert not (tmp_path / "run").exists(), "the scratch home is removed"


def test_no_network_no_writes_to_the_data_and_a_time_limit(release, tmp_path, hub_image, on):
    probe = notebook(
        "import socket, pathlib\n"
        "try:\n    socket.create_connection(('8.8.8.8', 53), timeout=3); net = 'open'\n"
        "except OSError as e:\n    net = type(e).__name__\n"
        "try:\n    pathlib.Path('/data/x').write_text('x'); data = 'written'\n"
        "except OSError as e:\n    data = type(e).__name__\n"
        "pathlib.Path('probe.txt').write_text(net + ' ' + data)",
    )
    result = run_notebook(
        hub_image, release, {"p.ipynb": probe}, "p.ipynb", tmp_path / "a", timeout=120, **on
    )
    assert result.ok, result.log
    net, data = result.files["probe.txt"].decode().split()
    # On a swarm's sealed network the task has a route, and the firewall drops the packets: a timeout.
    assert net in ("OSError", "TimeoutError") and data == "OSError", (net, data)

    slow = notebook("import time\ntime.sleep(600)")
    result = run_notebook(hub_image, release, {"s.ipynb": slow}, "s.ipynb", tmp_path / "b", timeout=15, **on)
    assert result.exit_code is None and "longer than its limit" in result.log


def test_paths_outside_the_home_are_refused(release, tmp_path, hub_image):
    with pytest.raises(SealedRunError, match="not a path inside the home"):
        run_notebook(hub_image, release, {"../x.ipynb": b"{}"}, "../x.ipynb", tmp_path / "c")
