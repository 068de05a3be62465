"""A researcher's notebook re-run on the host is still the researcher's code: it must not fill the
host's disk, make the root-owned service read host files through links it leaves behind, or have a
huge file read back into the service's memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.host.sealed import run_notebook
from tests.fixtures_kernel import notebook_bytes as notebook

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_a_run_that_fills_its_home_is_stopped(empty_release, tmp_path, hub_image):
    writer = notebook(
        "chunk = b'x' * (1 << 20)\nwith open('big.bin', 'wb') as fh:\n"
        "    for _ in range(2000):\n        fh.write(chunk); fh.flush()"
    )
    result = run_notebook(
        hub_image,
        empty_release,
        {"w.ipynb": writer},
        "w.ipynb",
        tmp_path / "run",
        home_limit=50 << 20,
        timeout=120,
    )
    assert result.exit_code is None and "wrote more than 52,428,800 bytes" in result.log
    assert not (tmp_path / "run").exists(), "and its home is gone"


def test_links_left_by_the_run_are_never_followed_on_the_host(empty_release, tmp_path, hub_image):
    # /etc/hostname exists on this host; inside the container the links point at the container's own.
    assert Path("/etc/hostname").is_file()
    linker = notebook("import os\nos.symlink('/etc', 'out')\nos.symlink('/etc/hostname', 'leak.txt')")
    result = run_notebook(
        hub_image,
        empty_release,
        {"l.ipynb": linker},
        "l.ipynb",
        tmp_path / "run",
        collect={"out/hostname", "leak.txt"},
    )
    assert result.ok, result.log
    assert result.files == {}, "neither link was followed"


def test_a_file_over_the_limit_is_not_read_back(empty_release, tmp_path, hub_image):
    big = notebook("open('out.csv', 'wb').write(b'a,b\\n' * 400_000)")
    result = run_notebook(
        hub_image, empty_release, {"b.ipynb": big}, "b.ipynb", tmp_path / "run", file_limit=1 << 20
    )
    assert result.ok and "out.csv" not in result.files
    assert "out.csv is larger than 1,048,576 bytes: not read back" in result.log
