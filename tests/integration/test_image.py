"""The notebook image, run the way the spawner runs it: uid 1000, read-only root, no capabilities.

The image is built (or found up to date) once per session by the `notebook_image` fixture, through
the same code as `tre images build`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time

import duckdb
import httpx
import pytest

from hub.host import images
from hub.kernel.settings import get_settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]

HARDENED = [
    "--user",
    "1000:1000",
    "--read-only",
    "--tmpfs",
    "/tmp:rw,noexec,nosuid,nodev,size=64m",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--pids-limit",
    "256",
]


def run_in(
    image: str, *cmd: str, args: tuple[str, ...] = (), timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", *HARDENED, *args, image, *cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def python_in(image: str, code: str, args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return run_in(image, "python", "-c", code, args=args)


def test_runs_hardened_as_uid_1000(notebook_image):
    result = run_in(notebook_image, "python", "-c", "pass")
    assert result.returncode == 0, result.stderr
    result = python_in(
        notebook_image,
        "import os, json; print(json.dumps([os.getuid(), os.getgid(), os.getcwd(), os.environ['HOME']]))",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [1000, 1000, "/home/jovyan", "/home/jovyan"]
    # and the image's own default user is the same one, named, so tools that look it up work
    default = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", notebook_image, "sh", "-c", "id -un; id -u; id -g"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert default.stdout.split() == ["jovyan", "1000", "1000"], default.stderr


def test_labels_record_the_recipe_and_versions(notebook_image):
    labels = images.image_labels(notebook_image)
    assert labels[images.LABEL_VERSION] == images.tre_version()
    assert labels[images.LABEL_DUCKDB] == images.host_version("duckdb")
    assert labels[images.LABEL_JUPYTERHUB] == images.host_version("jupyterhub")
    assert len(labels[images.LABEL_RECIPE]) == 16


def test_rebuild_with_nothing_changed_is_cached(notebook_image):
    result = images.build_image(get_settings(), reporter=images.BuildReporter())
    assert result.cached
    assert result.seconds < 30


def test_packages_import_with_the_expected_versions(notebook_image):
    code = """
import importlib, importlib.metadata as md, json, warnings
warnings.simplefilter("error")  # e.g. matplotlib complaining about an unwritable cache dir
for module in ("duckdb", "pandas", "polars", "pyarrow", "numpy", "matplotlib.pyplot", "statsmodels.api",
               "sklearn", "papermill", "ipykernel", "jupyterlab", "jupyterhub", "tre_notebook"):
    importlib.import_module(module)
names = ("duckdb", "jupyterhub", "jupyterlab", "pandas", "pyarrow", "numpy", "matplotlib", "statsmodels",
         "papermill", "polars", "scikit-learn", "ipykernel", "tre-notebook")
print(json.dumps({n: md.version(n) for n in names}))
"""
    result = python_in(notebook_image, code)
    assert result.returncode == 0, result.stderr
    versions = json.loads(result.stdout)
    for name in ("duckdb", "jupyterhub", "pandas", "pyarrow", "numpy", "matplotlib", "papermill"):
        host = images.host_version(name)
        if host:
            assert versions[name] == host, name
    assert versions["jupyterlab"].startswith("4.")


def test_system_files_are_not_writable_even_without_read_only_root(notebook_image):
    code = """
import os
paths = ["/opt/tre/etc/jupyter/jupyter_server_config.py", "/opt/tre/etc/jupyter", "/opt/tre/venv/bin",
         "/opt/tre/venv/lib/python3.11/site-packages/tre_notebook", "/etc/passwd", "/usr/bin"]
print([p for p in paths if os.access(p, os.W_OK)])
"""
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--user",
            "1000:1000",
            notebook_image,
            "python",
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_server_config_turns_terminals_off_and_loads_the_guard(notebook_image):
    code = """
import json
from jupyter_server.serverapp import ServerApp
app = ServerApp()
app.load_config_file()  # applies the config files to the app's traits
cm = app.contents_manager_class
print(json.dumps({
    "terminals": app.terminals_enabled,
    "contents": f"{cm.__module__}.{cm.__name__}",
    "files_handler": app.config.ContentsManager.files_handler_class,
    "config_paths": app.config_file_paths,
}))
"""
    result = python_in(notebook_image, code)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["terminals"] is False
    assert config["contents"] == "tre_notebook.server_ext.TreContentsManager"
    assert config["files_handler"] == "tre_notebook.server_ext.RefusedHandler"
    assert not any(p.startswith("/home") for p in config["config_paths"]), config["config_paths"]
    listing = run_in(notebook_image, "jupyter", "server", "extension", "list")
    assert listing.returncode == 0, listing.stderr
    text = re.sub(r"\x1b\[[0-9;]*m", "", listing.stdout + listing.stderr)  # drop colours
    assert "tre_notebook.server_ext enabled" in text, text
    assert "jupyterlab enabled" in text, text
    assert "jupyter_server_terminals disabled" in text, text  # and not loaded: see the server test
    assert "tre_notebook.server_ext  OK" in text or "tre_notebook.server_ext OK" in text, text
    # the single-user server (what the hub spawns) starts and knows its options
    result = run_in(notebook_image, "jupyterhub-singleuser", "--help")
    assert result.returncode == 0, result.stderr


@pytest.fixture
def release(tmp_path):
    """A tiny project release: a parquet file and a catalogue of views over it, world-readable."""
    (tmp_path / "data").mkdir()
    parquet = tmp_path / "data" / "labs.parquet"
    duckdb.connect().sql(
        f"COPY (SELECT range AS id, range * 1.5 AS hba1c FROM range(20)) TO '{parquet}' (FORMAT parquet)"
    )
    con = duckdb.connect(str(tmp_path / "catalog.duckdb"))
    con.execute(f"SET file_search_path = '{tmp_path}'")
    con.execute("CREATE VIEW labs AS SELECT * FROM read_parquet('data/labs.parquet')")
    con.close()
    for path in [tmp_path, *tmp_path.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return tmp_path


def test_connect_reads_the_catalogue_and_cannot_write(notebook_image, release):
    code = """
import json, duckdb, tre_notebook
con = tre_notebook.connect()
out = {"rows": con.execute("SELECT count(*) FROM labs").fetchone()[0]}
out["db"] = con.execute("SELECT current_database()").fetchone()[0]
for name, sql in [("create", "CREATE TABLE t AS SELECT 1"), ("drop", "DROP VIEW labs")]:
    try:
        con.execute(sql)
        out[name] = "allowed"
    except duckdb.Error as exc:
        out[name] = str(exc)
try:
    open("/data/new.txt", "w")
    out["file"] = "allowed"
except OSError as exc:
    out["file"] = exc.strerror
print(json.dumps(out))
"""
    result = python_in(notebook_image, code, args=("-v", f"{release}:/data:ro"))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["rows"] == 20
    assert out["db"] == "catalog"
    assert "read-only" in out["create"].lower() or "read only" in out["create"].lower()
    assert "read" in out["drop"].lower()
    assert out["file"] == "Read-only file system"


def test_papermill_runs_a_notebook_against_the_catalogue(notebook_image, release, tmp_path):
    """A kernel starts on the read-only root (connection files on the noexec /tmp) and plots."""
    home = tmp_path / "home"
    home.mkdir()
    source = [
        "import tre_notebook, matplotlib.pyplot as plt\n",
        "df = tre_notebook.connect().sql('SELECT * FROM labs').df()\n",
        "df.plot(x='id', y='hba1c').figure.savefig('plot.png')\n",
        "print(len(df))\n",
    ]
    notebook = {
        "cells": [
            {"cell_type": "code", "metadata": {}, "source": source, "outputs": [], "execution_count": None}
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (home / "in.ipynb").write_text(json.dumps(notebook))
    os.chown(home, 1000, 1000)
    os.chown(home / "in.ipynb", 1000, 1000)
    result = run_in(
        notebook_image,
        "papermill",
        "in.ipynb",
        "out.ipynb",
        args=("-v", f"{release}:/data:ro", "-v", f"{home}:/home/jovyan"),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads((home / "out.ipynb").read_text())
    assert out["cells"][0]["outputs"][0]["text"] == ["20\n"]
    assert (home / "plot.png").stat().st_size > 1000


@pytest.fixture
def jupyter_server(notebook_image, tmp_path):
    """`jupyter server` in a hardened container, published on 127.0.0.1 only, with a 1 MiB upload cap."""
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, 1000, 1000)
    token = secrets.token_hex(16)
    name = f"tre-image-test-{secrets.token_hex(4)}"
    subprocess.run(
        [
            "docker", "run", "-d", "--rm", "--name", name, *HARDENED,
            "-v", f"{home}:/home/jovyan",
            "-e", f"TRE_MAX_UPLOAD_BYTES={1024 * 1024}",
            "-p", "127.0.0.1::8888",
            notebook_image,
            "jupyter", "server", "--ip=0.0.0.0", "--port=8888", f"--IdentityProvider.token={token}",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    try:
        port = (
            subprocess.run(["docker", "port", name, "8888/tcp"], capture_output=True, text=True, check=True)
            .stdout.split(":")[-1]
            .strip()
        )
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"token {token}"}, timeout=10
        )
        deadline = time.monotonic() + 90
        while True:
            try:
                if client.get("/api/status").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True).stderr
                pytest.fail(f"jupyter server did not start:\n{logs[-3000:]}")
            time.sleep(0.5)
        yield client, home, name
        client.close()
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def test_server_refuses_downloads_and_terminals(jupyter_server):
    client, home, name = jupyter_server
    put = client.put(
        "/api/contents/result.csv", json={"type": "file", "format": "text", "content": "a,b\n1,2\n"}
    )
    assert put.status_code == 201, put.text
    nb = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    assert client.put("/api/contents/a.ipynb", json={"type": "notebook", "content": nb}).status_code == 201
    assert (home / "result.csv").read_text() == "a,b\n1,2\n"

    # JupyterLab needs the contents API to open files: it works (see docs for what that implies)
    got = client.get("/api/contents/result.csv", params={"content": "1"})
    assert got.status_code == 200
    assert got.json()["content"] == "a,b\n1,2\n"

    for path in (
        "/files/result.csv",
        "/view/result.csv",
        "/nbconvert/html/a.ipynb",
        "/nbconvert/script/a.ipynb",
    ):
        response = client.get(path)
        assert response.status_code == 403, (path, response.status_code)
        assert "a,b" not in response.text
    assert client.post("/nbconvert/html", json={"cells": []}).status_code == 403
    assert client.get("/api/nbconvert").json() == {}  # JupyterLab offers no export format
    assert client.get("/files/result.csv", headers={"Authorization": ""}).status_code == 403

    assert client.post("/api/terminals").status_code == 404
    assert client.get("/api/terminals").status_code == 404
    assert client.get("/terminals/1").status_code == 404
    logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True, check=True).stderr
    assert "tre_notebook.server_ext | extension was successfully loaded" in logs
    assert "jupyter_server_terminals | extension was successfully loaded" not in logs


def test_server_caps_uploads(jupyter_server):
    client, home, _ = jupyter_server
    big = "x" * (1024 * 1024 + 1)
    response = client.put("/api/contents/big.txt", json={"type": "file", "format": "text", "content": big})
    assert response.status_code == 413
    assert not (home / "big.txt").exists()
    # chunked uploads (what JupyterLab does for large files) are checked on the assembled file
    chunk = "y" * (600 * 1024)
    for number in (1, 2):
        response = client.put(
            "/api/contents/chunked.txt",
            json={"type": "file", "format": "text", "content": chunk, "chunk": number},
        )
    assert response.status_code == 413
    assert not (home / "chunked.txt").exists()


def test_lab_has_its_download_plugins_disabled(jupyter_server):
    client, _, _ = jupyter_server
    page = client.get("/lab")
    assert page.status_code == 200
    for plugin in (
        "@jupyterlab/docmanager-extension:download",
        "@jupyterlab/filebrowser-extension:download",
        "@jupyterlab/notebook-extension:export",
    ):
        assert plugin in page.text
    settings = client.get("/lab/api/settings/@jupyterlab/apputils-extension:notification").json()
    assert settings["schema"]["properties"]["fetchNews"]["default"] == "false"  # overrides.json
