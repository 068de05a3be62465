"""Workspace file picking refusals and content-addressed blob storage."""

from __future__ import annotations

import os
import socket

import pytest

from egress.review.storage import BlobStore, Refused, check_relpath, list_workspace, open_workspace_file

MAX = 1000


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    (h / "out").mkdir(parents=True)
    (h / "out" / "t.csv").write_text("a,b\n1,2\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "secret.csv").write_text("id\n1\n")
    return h


def pick(home, rel, max_bytes=MAX):
    with open_workspace_file(home, rel, max_bytes) as wf:
        return wf.relpath, os.pread(wf.fd, 100, 0)


def test_picks_a_regular_file(home):
    assert pick(home, "out/t.csv") == ("out/t.csv", b"a,b\n1,2\n")
    assert pick(home, "./out//t.csv")[0] == "out/t.csv"


@pytest.mark.parametrize(
    ("rel", "message"),
    [
        ("../data/secret.csv", "contains '..'"),
        ("out/../../data/secret.csv", "contains '..'"),
        ("/etc/passwd.txt", "outside your workspace"),
        ("", "Give the path"),
        ("out/missing.csv", "does not exist"),
        ("out/t.exe", "file type"),
        ("out", "file type"),
    ],
)
def test_refuses_paths(home, rel, message):
    with pytest.raises(Refused, match=message):
        pick(home, rel)


def test_refuses_symlinks_to_data_anywhere_on_the_path(home, tmp_path):
    os.symlink(tmp_path / "data" / "secret.csv", home / "link.csv")
    os.symlink(tmp_path / "data", home / "d")
    os.symlink(tmp_path / "data", home / "out" / "inner")
    for rel in ("link.csv", "d/secret.csv", "out/inner/secret.csv"):
        with pytest.raises(Refused, match="symbolic link"):
            pick(home, rel)


def test_refuses_home_that_is_a_symlink(home, tmp_path):
    os.symlink(home, tmp_path / "homelink")
    with pytest.raises(Refused, match="symbolic link"):
        pick(tmp_path / "homelink", "out/t.csv")


def test_refuses_special_files_and_hard_links(home, tmp_path):
    os.mkfifo(home / "pipe.csv")
    with pytest.raises(Refused, match="not a regular file"):
        pick(home, "pipe.csv")
    s = socket.socket(socket.AF_UNIX)
    sock_path = home / "s.txt"
    try:
        s.bind(str(sock_path))
        with pytest.raises(Refused, match="not a regular file"):
            pick(home, "s.txt")
    finally:
        s.close()
    os.link(home / "out" / "t.csv", home / "hard.csv")
    with pytest.raises(Refused, match="hard link"):
        pick(home, "hard.csv")


def test_refuses_files_over_the_limit(home):
    (home / "big.csv").write_bytes(b"x" * (MAX + 1))
    with pytest.raises(Refused, match="the limit is 1,000 bytes"):
        pick(home, "big.csv")


def test_check_relpath_normalises():
    assert check_relpath("a/./b.csv") == ("a", "b.csv")
    with pytest.raises(Refused):
        check_relpath("a/\x00.csv")
    with pytest.raises(Refused):
        check_relpath("\\x.csv")


def test_list_workspace_marks_refused_entries(home, tmp_path):
    os.symlink(tmp_path / "data", home / "d")
    (home / "run.exe").write_text("x")
    entries = {e.name: e for e in list_workspace(home)}
    assert entries["out"].kind == "dir"
    assert entries["d"].kind == "refused" and entries["d"].note == "symbolic link"
    assert entries["run.exe"].kind == "refused"
    inner = list_workspace(home, "out")
    assert [(e.relpath, e.kind) for e in inner] == [("out/t.csv", "file")]
    with pytest.raises(Refused, match="symbolic link"):
        list_workspace(home, "d")


def test_blob_store_is_content_addressed_and_atomic(tmp_path, home):
    store = BlobStore(tmp_path / "egress")
    with open_workspace_file(home, "out/t.csv", MAX) as wf:
        sha, size = store.put_fd(wf.fd, MAX)
    assert size == 8
    path = store.path(sha)
    assert path.parent.name == sha[:2] and path.name == sha[2:]
    assert store.read(sha) == b"a,b\n1,2\n"
    assert store.verify(sha)
    assert store.put_bytes(b"a,b\n1,2\n") == sha  # same content, same address
    assert list(store.tmp.iterdir()) == []  # no temporary left behind
    # later workspace edits change nothing in the store
    (home / "out" / "t.csv").write_text("changed")
    assert store.read(sha) == b"a,b\n1,2\n"
    # a tampered blob fails verification
    os.chmod(path, 0o600)
    path.write_bytes(b"tampered")
    assert not store.verify(sha)
    assert not store.verify("0" * 64)
    with pytest.raises(ValueError):
        store.path("../../etc")


def test_blob_store_refuses_growth_and_cleans_temporaries(tmp_path):
    store = BlobStore(tmp_path / "egress")
    with pytest.raises(Refused, match="larger than the limit"):
        store._store(iter([b"x" * 10, b"y" * 10]), 15)
    assert list(store.tmp.iterdir()) == []
    (store.tmp / "leftover").write_bytes(b"partial")
    assert store.clean_temporary() == 1
