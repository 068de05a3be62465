"""The image build's recipe hashing, pinning and cache decisions (no Docker needed)."""

from __future__ import annotations

import json

import pytest

from hub.host import images
from hub.kernel.settings import Settings


def test_base_recipe_digest_is_stable_and_follows_the_recipe():
    base = images.BaseRecipe()
    assert base.digest() == images.BaseRecipe().digest()
    assert base.tag == f"tre-base:bookworm-{base.digest()}"
    assert images.BaseRecipe(packages=(*base.packages, "locales")).digest() != base.digest()
    assert images.BaseRecipe(revision=base.revision + 1).digest() != base.digest()


def test_pins_follow_the_host_and_keep_the_spec_otherwise():
    host = {"duckdb": "2.0.1", "jupyterhub": "6.1.1", "pandas": "3.0.0"}
    pinned = images.pin_requirements(
        ["duckdb>=1.4", "jupyterhub>=6,<7", "pandas>=2.2", "polars==2.1.0"], host.get
    )
    assert pinned == ["duckdb==2.0.1", "jupyterhub==6.1.1", "pandas==3.0.0", "polars==2.1.0"]


@pytest.mark.parametrize("missing", images.MUST_MATCH_HOST)
def test_duckdb_and_jupyterhub_must_be_on_the_host(missing):
    host = {"duckdb": "2.0.1", "jupyterhub": "6.1.1"}
    del host[missing]
    with pytest.raises(images.ImageBuildError, match=missing):
        images.pin_requirements(["duckdb", "jupyterhub"], host.get)


def test_requirements_file_lists_the_image_packages():
    names = {images._requirement_name(spec) for spec in images.read_requirements()}
    assert {"jupyterlab", "jupyterhub", "duckdb", "polars", "papermill", "ipykernel"} <= names


def test_recipe_hash_changes_with_any_input_and_ignores_order():
    files = {"notebook/Dockerfile": "a", "tre_notebook/x.py": "b"}
    reqs = ["duckdb==2.0.1", "pandas==3.0.0"]
    digest = images.recipe_hash("base@1", reqs, files)
    assert digest == images.recipe_hash("base@1", list(reversed(reqs)), dict(reversed(files.items())))
    assert digest != images.recipe_hash("base@2", reqs, files)
    assert digest != images.recipe_hash("base@1", ["duckdb==2.0.0", "pandas==3.0.0"], files)
    assert digest != images.recipe_hash("base@1", reqs, {**files, "tre_notebook/x.py": "c"})


def test_tree_hashes_skip_caches_and_build_output(tmp_path):
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"x")
    (tmp_path / "pkg.egg-info").mkdir()
    (tmp_path / "pkg.egg-info" / "PKG-INFO").write_text("x")
    (tmp_path / "build" / "lib").mkdir(parents=True)
    (tmp_path / "build" / "lib" / "m.py").write_text("x")
    (tmp_path / "pkg" / "m.py").write_text("print(1)")
    before = images.tree_hashes(tmp_path, "p")
    assert list(before) == ["p/pkg/m.py"]
    (tmp_path / "pkg" / "m.py").write_text("print(2)")
    assert images.tree_hashes(tmp_path, "p") != before


def test_real_sources_are_hashed():
    files = images.tree_hashes(images.NOTEBOOK_DIR, "notebook")
    assert "notebook/Dockerfile" in files
    assert "notebook/etc/jupyter/jupyter_server_config.py" in files


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("tre-notebook:latest", ["tre-notebook:0.1.0", "tre-notebook:latest"]),
        ("tre-notebook", ["tre-notebook:0.1.0", "tre-notebook:latest"]),
        ("tre-notebook:dev", ["tre-notebook:0.1.0", "tre-notebook:latest", "tre-notebook:dev"]),
        ("reg:5000/tre-notebook", ["reg:5000/tre-notebook:0.1.0", "reg:5000/tre-notebook:latest"]),
    ],
)
def test_image_tags(image, expected):
    assert images.image_tags(image, "0.1.0") == expected


def test_wheel_platforms_stop_at_the_image_glibc():
    tags = images.wheel_platforms("x86_64")
    assert "manylinux_2_36_x86_64" in tags
    assert "manylinux_2_17_x86_64" in tags
    assert "manylinux2014_x86_64" in tags
    assert "manylinux_2_37_x86_64" not in tags


class FakeDocker:
    """Just enough of the Docker engine for build_image's decisions."""

    def __init__(self, labels_by_ref):
        self.labels_by_ref = labels_by_ref
        self.tagged = []
        self.streamed = []

    def inspect(self, ref):
        if ref not in self.labels_by_ref:
            return None
        return {"Id": f"sha256:{ref}", "Config": {"Labels": self.labels_by_ref[ref]}}

    def docker(self, *args, timeout=None):
        if args[0] == "tag":
            self.tagged.append(args[1:])
            self.labels_by_ref[args[2]] = self.labels_by_ref[args[1]]
        return None


@pytest.fixture
def fake_docker(monkeypatch, tmp_path):
    fake = FakeDocker({})
    monkeypatch.setattr(images, "docker_available", lambda: True)
    monkeypatch.setattr(images, "image_inspect", fake.inspect)
    monkeypatch.setattr(images, "docker", fake.docker)
    monkeypatch.setattr(images, "try_pull", lambda ref, timeout: False)

    def fake_debootstrap(recipe, reporter, mirror, cache):
        fake.labels_by_ref[recipe.tag] = {}  # imported: now it has an image ID
        return recipe.tag

    monkeypatch.setattr(images, "ensure_debootstrap_base", fake_debootstrap)
    # Settings whose build cache is this test's own folder.
    fake.settings = lambda **kw: Settings(image_cache=tmp_path / "build", **kw)

    def fake_wheelhouse(requirements, reporter, cache):
        house = cache / "wheelhouse"
        house.mkdir(parents=True, exist_ok=True)
        (house / "tre_notebook-0.1.0-py3-none-any.whl").write_bytes(b"")
        return house

    monkeypatch.setattr(images, "build_wheelhouse", fake_wheelhouse)
    monkeypatch.setattr(images, "_stream", lambda cmd, reporter, what, env=None: fake.streamed.append(cmd))
    return fake


def _plan(settings):
    tag = images.BaseRecipe().tag
    return images.plan(settings, tag, images._base_identity(tag))


def test_build_runs_without_network_and_labels_the_image(fake_docker):
    settings = fake_docker.settings(image="tre-notebook:latest")
    result = images.build_image(settings, reporter=images.BuildReporter())
    assert not result.cached
    (cmd,) = fake_docker.streamed
    assert cmd[:4] == ["docker", "build", "--network", "none"]
    assert f"{images.LABEL_RECIPE}={result.recipe_hash}" in cmd
    assert f"{images.LABEL_DUCKDB}={images.host_version('duckdb')}" in cmd
    assert "tre-notebook:latest" in cmd
    assert result.recipe_hash == _plan(settings).recipe_hash  # computed with the imported base's ID


def test_a_remade_base_means_a_new_notebook_image(fake_docker, monkeypatch):
    settings = fake_docker.settings(image="tre-notebook:latest")
    tag = images.BaseRecipe().tag
    fake_docker.labels_by_ref[tag] = {}
    before = _plan(settings).recipe_hash
    monkeypatch.setattr(images, "image_inspect", lambda ref: {"Id": "sha256:new", "Config": {"Labels": {}}})
    assert images.plan(settings, tag, images._base_identity(tag)).recipe_hash != before


def test_unchanged_recipe_is_not_rebuilt(fake_docker):
    settings = fake_docker.settings(image="tre-notebook:latest")
    fake_docker.labels_by_ref[images.BaseRecipe().tag] = {}
    p = _plan(settings)
    fake_docker.labels_by_ref[p.tags[0]] = {images.LABEL_RECIPE: p.recipe_hash}
    result = images.build_image(settings, reporter=images.BuildReporter())
    assert result.cached
    assert fake_docker.streamed == []
    # a missing :latest is re-tagged from the versioned image rather than rebuilt
    assert fake_docker.tagged == [(p.tags[0], "tre-notebook:latest")]


def test_changed_recipe_or_force_rebuilds(fake_docker):
    settings = fake_docker.settings(image="tre-notebook:latest")
    fake_docker.labels_by_ref[images.BaseRecipe().tag] = {}
    p = _plan(settings)
    for tag in p.tags:
        fake_docker.labels_by_ref[tag] = {images.LABEL_RECIPE: "0000000000000000"}
    assert not images.build_image(settings, reporter=images.BuildReporter()).cached
    for tag in p.tags:
        fake_docker.labels_by_ref[tag] = {images.LABEL_RECIPE: p.recipe_hash}
    assert not images.build_image(settings, force=True, reporter=images.BuildReporter()).cached
    assert len(fake_docker.streamed) == 2


def test_missing_docker_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(images, "docker_available", lambda: False)
    with pytest.raises(images.ImageBuildError, match="Docker engine"):
        images.build_image(Settings(), reporter=images.BuildReporter())


def test_a_local_slim_python_image_is_preferred_to_debootstrap(fake_docker):
    fake_docker.labels_by_ref[images.SLIM_BASE] = {}
    settings = fake_docker.settings(image="tre-notebook:latest")
    result = images.build_image(settings, reporter=images.BuildReporter())
    assert result.base == images.SLIM_BASE
    assert f"BASE={images.SLIM_BASE}" in fake_docker.streamed[0]


def test_an_explicit_base_must_be_present(fake_docker):
    with pytest.raises(images.ImageBuildError, match="docker load"):
        images.build_image(fake_docker.settings(), base="debian:bookworm", reporter=images.BuildReporter())


def test_cli_reports_build_errors_in_one_line(monkeypatch):
    from typer.testing import CliRunner

    from hub.cli import app

    def broken(settings, **_kwargs):
        raise images.ImageBuildError("debootstrap needs root: run `sudo tre images build`")

    monkeypatch.setattr(images, "build_image", broken)
    result = CliRunner().invoke(app, ["images", "build"])
    assert result.exit_code == 1
    assert "debootstrap needs root" in result.output


def test_cli_lists_images_as_json(monkeypatch):
    from typer.testing import CliRunner

    from hub.cli import app

    row = {"image": "tre-notebook:0.1.0", "id": "abc", "created": "now", "size": "1GB", "version": "0.1.0"}
    monkeypatch.setattr(images, "list_images", lambda settings: [row])
    result = CliRunner().invoke(app, ["images", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [row]
