"""The house keeps its shape: imports run one way down the layers of docs/development.md.

`lint-imports` checks the contract in pyproject.toml (imports inside functions included); this test
also makes sure the contract names every package, so a new one cannot live outside the layers.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _contract() -> dict:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return contract


def test_lint_imports_keeps_the_layers():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_every_package_is_in_a_layer():
    layered = {m.strip() for layer in _contract()["layers"] for m in re.split(r"[|:]", layer)}
    packages = {
        ".".join(init.parent.relative_to(REPO).parts)
        for root in ("hub", "egress")
        for init in (REPO / root).glob("*/__init__.py")
    }
    assert packages == layered, f"not layered: {packages - layered}; gone: {layered - packages}"


def test_the_layers_put_the_kernel_and_the_engine_at_the_bottom():
    layers = _contract()["layers"]
    assert layers[-2:] == ["hub.kernel", "egress.sdc"]
    assert layers[0] == "hub.cli"


def test_test_modules_have_unique_names():
    """pytest imports test modules by their base name (rootdir-relative, no packages in between): two
    test_x.py in different folders break collection of the whole suite."""
    from collections import Counter
    from pathlib import Path

    tests = Path(__file__).resolve().parents[1]
    names = Counter(p.name for p in tests.rglob("test_*.py") if ".venv" not in p.parts)
    assert [n for n, k in names.items() if k > 1] == []
