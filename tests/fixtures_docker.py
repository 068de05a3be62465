"""Docker fixtures (see tests/conftest.py): the engine, and the notebook image built once per session.

In CI (CI set) a missing Docker engine fails the tests that need it: .ci/setup-host.sh is meant
to start it, so a skip there would hide a broken CI rather than a missing optional tool.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def docker_available() -> bool:
    from hub.host.images import docker_available as engine_up

    if not engine_up():
        message = "no reachable Docker engine (start one with .ci/setup-host.sh)"
        if os.environ.get("CI"):
            pytest.fail(f"CI: {message}", pytrace=False)
        pytest.skip(message)
    return True


@pytest.fixture(scope="session")
def notebook_image(docker_available) -> str:
    """The spawner's image name (Settings.image), built or found up to date like `tre images build`."""
    from hub.host.images import BuildReporter, ImageBuildError, build_image
    from hub.kernel.settings import get_settings

    settings = get_settings()
    try:
        build_image(settings, reporter=BuildReporter())
    except ImageBuildError as exc:
        pytest.fail(f"notebook image build failed: {exc}", pytrace=False)
    return settings.image


@pytest.fixture
def empty_release(tmp_path):
    """A release folder with an empty data/ that the workspace user may read, for sealed runs."""
    root = tmp_path / "release"
    (root / "data").mkdir(parents=True)
    for path in (root, root / "data"):
        path.chmod(0o755)
    return root
