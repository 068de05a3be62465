"""tre_notebook.connect(): the project catalogue, attached read-only, on the host's duckdb."""

from __future__ import annotations

import duckdb
import pytest
import tre_notebook


@pytest.fixture
def release(tmp_path, monkeypatch):
    """A release folder laid out as provisioning does: data/*.parquet + catalog.duckdb of views."""
    (tmp_path / "data").mkdir()
    parquet = tmp_path / "data" / "patients.parquet"
    duckdb.connect().sql(
        f"COPY (SELECT range AS id, range % 3 AS arm FROM range(10)) TO '{parquet}' (FORMAT parquet)"
    )
    cat = duckdb.connect(str(tmp_path / "catalog.duckdb"))
    # a relative path, resolved against the release folder (as connect() does in the workspace)
    cat.execute(f"SET file_search_path = '{tmp_path}'")
    cat.execute("CREATE VIEW patients AS SELECT * FROM read_parquet('data/patients.parquet')")
    cat.close()
    monkeypatch.setenv("TRE_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)
    return tmp_path


def test_connect_selects_the_catalogue(release):
    con = tre_notebook.connect()
    assert con.execute("SELECT count(*), max(arm) FROM patients").fetchone() == (10, 2)
    assert con.execute("SELECT current_database()").fetchone() == ("catalog",)


def test_catalogue_is_read_only(release):
    con = tre_notebook.connect()
    for statement in (
        "CREATE TABLE sneaky AS SELECT 1",
        "DROP VIEW patients",
        "CREATE OR REPLACE VIEW patients AS SELECT 1",
    ):
        with pytest.raises(duckdb.Error, match=r"read-only|read only"):
            con.execute(statement)
    # scratch work in memory still works
    con.execute("CREATE TEMP TABLE scratch AS SELECT * FROM patients WHERE arm = 1")
    assert con.execute("SELECT count(*) FROM scratch").fetchone() == (3,)


def test_extension_autoloading_is_off(release):
    con = tre_notebook.connect()
    settings = dict(
        con.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN "
            "('autoinstall_known_extensions', 'autoload_known_extensions')"
        ).fetchall()
    )
    assert settings == {"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"}


def test_explicit_path_and_missing_catalogue(release, tmp_path_factory):
    con = tre_notebook.connect(release / "catalog.duckdb")
    assert con.execute("SELECT count(*) FROM patients").fetchone() == (10,)
    with pytest.raises(FileNotFoundError, match="No project catalogue"):
        tre_notebook.connect(tmp_path_factory.mktemp("empty") / "catalog.duckdb")


def test_data_dir_follows_the_environment(monkeypatch):
    monkeypatch.delenv("TRE_DATA_DIR", raising=False)
    assert str(tre_notebook.data_dir()) == "/data"
    monkeypatch.setenv("TRE_DATA_DIR", "/elsewhere")
    assert str(tre_notebook.data_dir()) == "/elsewhere"
