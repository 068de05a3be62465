"""Shared fixtures: every test gets its own TRE_ROOT so nothing leaks between cases.

Fixture modules for the bigger parts live beside this file and are registered here.
"""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.fixtures_registry",
    "tests.fixtures_docker",
    "tests.fixtures_hub",
    "tests.fixtures_egress",
    "tests.fixtures_browser",
]


@pytest.fixture
def tre_root(tmp_path, monkeypatch):
    root = tmp_path / "tre"
    root.mkdir()
    monkeypatch.setenv("TRE_ROOT", str(root))
    monkeypatch.delenv("TRE_DB_URL", raising=False)
    return root
