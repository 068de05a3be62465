"""The SQL HMAC equals Python's hmac; keys differ per project; collisions fail."""

from __future__ import annotations

import hmac

import duckdb
import pytest

from hub.provisioning.pseudonym import create_pseudonym_table, project_key, pseudonym

MASTER = b"0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("key", [b"k", b"x" * 32, b"y" * 64, b"z" * 100])
def test_sql_hmac_matches_python(key):
    con = duckdb.connect()
    values = ["9434765919", "0000000000", "", "ünïcode", "a'quote"]
    con.execute("CREATE TABLE src(value VARCHAR)")
    con.executemany("INSERT INTO src VALUES (?)", [[v] for v in [*values, None, values[0]]])
    n = create_pseudonym_table(con, key, "SELECT value FROM src", "pmap")
    assert n == len(values)  # distinct, nulls dropped
    rows = dict(con.execute("SELECT value, pseudonym FROM pmap").fetchall())
    for v in values:
        full = hmac.digest(key, v.encode(), "sha256").hex()
        assert rows[v] == full[:16] == pseudonym(key, v)
    seeds = dict(con.execute("SELECT value, shift_seed FROM pmap").fetchall())
    assert seeds[values[0]] == int(hmac.digest(key, values[0].encode(), "sha256").hex()[16:24], 16)


def test_project_keys_differ_and_are_stable():
    a, b = project_key(MASTER, "alpha"), project_key(MASTER, "beta")
    assert a != b and a == project_key(MASTER, "alpha") and len(a) == 32
    assert pseudonym(a, "9434765919") != pseudonym(b, "9434765919")
    with pytest.raises(ValueError, match="too short"):
        project_key(b"short", "alpha")


def test_collision_fails(monkeypatch):
    import hub.provisioning.pseudonym as mod

    monkeypatch.setattr(mod, "PSEUDONYM_HEX_CHARS", 1)  # 16 possible pseudonyms: collisions certain
    con = duckdb.connect()
    with pytest.raises(ValueError, match="pseudonym collision"):
        mod.create_pseudonym_table(con, b"k", "SELECT range::VARCHAR AS value FROM range(100)", "pmap")
