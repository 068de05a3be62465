"""The documentation stays true as the code changes.

- `mkdocs build --strict` passes (every nav page exists, no broken links);
- every `tests/<path>.py::<test name>` cited as evidence in docs/ names a test function that exists;
- every repository file named anywhere (docs, READMEs, code comments and docstrings) exists;
- every `tre ...` command shown in docs/ exists in the Typer app, with the options it is shown with;
- the audit actions and the TRE_* settings the docs list are exactly the ones the code has.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from hub.cli import app

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
DOC_FILES = sorted(DOCS.rglob("*.md"))

TEST_REF = re.compile(r"(tests/[\w/.-]+\.py)(?:::(\w+))?")
FENCE = re.compile(r"^```.*?$(.*?)^```", re.M | re.S)
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
ENV_ASSIGN = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")
SEGMENT_SPLIT = re.compile(r"\|\||&&|[|;]|\$\(")


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


# --- the site builds ---------------------------------------------------------------------------


def test_mkdocs_build_strict(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists():
        pytest.skip("mkdocs is not installed (pip install -e '.[dev]')")
    result = subprocess.run(
        [
            str(mkdocs),
            "build",
            "--strict",
            "--config-file",
            str(REPO / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- evidence references -----------------------------------------------------------------------


def _test_names(path: Path) -> set[str]:
    """Module-level test functions and Test* class methods, as `name` and `Class::name`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(f"{node.name}::{item.name}")
    return names


def evidence_references() -> list[tuple[str, str, str | None]]:
    """(doc file, test file, test name or None) for every tests/... reference in the docs."""
    refs = []
    for doc in DOC_FILES:
        for m in TEST_REF.finditer(doc.read_text(encoding="utf-8")):
            refs.append((_rel(doc), m.group(1), m.group(2)))
    return refs


def test_docs_cite_tests():
    refs = evidence_references()
    assert len(refs) > 50, "the security model and SATRE pages should cite their evidence"


def test_every_cited_test_exists():
    missing = []
    cache: dict[str, set[str]] = {}
    for doc, file, name in evidence_references():
        path = REPO / file
        if not path.is_file():
            missing.append(f"{doc}: {file} does not exist")
            continue
        if name is None:
            continue
        names = cache.setdefault(file, _test_names(path))
        if name not in names:
            missing.append(f"{doc}: {file}::{name} does not exist")
    assert not missing, "\n".join(sorted(set(missing)))


# A repository path as prose names it: hub/kernel/db.py, docs/security.md, images/notebook/Dockerfile.
REPO_PATH = re.compile(
    r"(?<![\w./-])((?:hub|egress|images|ansible|tests|docs|\.ci)/[\w.-]+(?:/[\w.-]+)*"
    r"\.(?:py|yml|yaml|json|toml|in|md|sh|j2|html|css|ipynb))\b"
)
TEXT_SUFFIXES = {".py", ".md", ".yml", ".yaml", ".toml", ".sh", ".j2", ".in", ".cfg"}


def _repository_texts() -> list[Path]:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return [REPO / f for f in tracked if Path(f).suffix in TEXT_SUFFIXES or Path(f).name == "Makefile"]


def test_every_repository_path_named_anywhere_exists():
    """Docs, READMEs and the code's own comments name files that must exist (not a retired layout)."""
    missing = []
    for path in _repository_texts():
        if not path.is_file():
            continue
        for m in REPO_PATH.finditer(path.read_text(encoding="utf-8", errors="replace")):
            name = m.group(1)
            if "*" in name or "<" in name or name.startswith("tests/sdc_corpus/files/"):
                continue
            if not (REPO / name).exists():
                missing.append(f"{_rel(path)}: {name}")
    assert not missing, "\n".join(sorted(set(missing)))


def test_nothing_refers_to_a_design_file_the_repository_does_not_have():
    refs = [
        _rel(p)
        for p in _repository_texts()
        if p.is_file() and p.name != "test_docs.py" and "DESIGN.md" in p.read_text(errors="replace")
    ]
    assert not refs, refs


def test_the_path_finder_sees_prose_and_code_references():
    text = "see hub/kernel/db.py and `docs/security.md`; not foo/hub/x.py or hub/*.py"
    assert [m.group(1) for m in REPO_PATH.finditer(text)] == ["hub/kernel/db.py", "docs/security.md"]


# --- tre commands ------------------------------------------------------------------------------


def _root():
    return typer.main.get_command(app)


def _is_group(cmd) -> bool:
    # Typer may vendor its own click: recognise groups by shape, not by class.
    return isinstance(getattr(cmd, "commands", None), dict)


def _command_lines(text: str) -> list[str]:
    """Shell command segments from fenced blocks and inline code spans."""
    chunks: list[str] = []
    for block in FENCE.findall(text):
        joined = re.sub(r"\\\n\s*", " ", block)  # line continuations
        chunks += joined.splitlines()
    without_fences = FENCE.sub("", text)
    chunks += INLINE.findall(without_fences)
    segments = []
    for chunk in chunks:
        chunk = chunk.split(" #", 1)[0].strip()
        segments += [s.strip() for s in SEGMENT_SPLIT.split(chunk) if s.strip()]
    return segments


def _tre_argv(segment: str) -> list[str] | None:
    """The arguments after `tre` when the segment runs the tre command, else None."""
    try:
        words = shlex.split(segment, comments=False)
    except ValueError:
        words = segment.split()
    while words and (ENV_ASSIGN.match(words[0]) or words[0] in ("sudo", "sudo -E", "-E", "exec")):
        words = words[1:]
    if not words:
        return None
    first = words[0]
    if first == "tre" or first.endswith("/bin/tre"):
        return words[1:]
    return None


def check_tre_command(argv: list[str]) -> str | None:
    """None if `tre argv...` names a real command with real options, else what is wrong."""
    cmd = _root()
    path = ["tre"]
    i = 0
    while _is_group(cmd) and i < len(argv):
        token = argv[i]
        if token.startswith("-"):
            break
        if token not in cmd.commands:
            if token.startswith(("<", "[", "{")) or token in ("...", "…"):
                break
            return f"`{' '.join(path)}` has no command {token!r}"
        cmd = cmd.commands[token]
        path.append(token)
        i += 1
    if _is_group(cmd):
        rest = argv[i:]
        if rest and rest != ["--help"]:
            return f"`{' '.join(path)}` is a group; {rest[0]!r} is not one of its commands"
        return None
    known = {"--help"}
    for param in cmd.params:
        opts = [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]
        known.update(o for o in opts if o.startswith("-"))
    for token in argv[i:]:
        if token.startswith("-") and token not in ("-", "--"):
            option = token.split("=", 1)[0]
            if option not in known:
                return f"`{' '.join(path)}` has no option {option}"
    return None


def tre_commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOC_FILES:
        for segment in _command_lines(doc.read_text(encoding="utf-8")):
            if _tre_argv(segment) is not None:
                found.append((_rel(doc), segment))
    return found


def test_docs_show_tre_commands():
    assert len(tre_commands()) > 30


def test_every_tre_command_in_the_docs_exists():
    problems = []
    for doc, segment in tre_commands():
        argv = _tre_argv(segment)
        assert argv is not None
        problem = check_tre_command(argv)
        if problem:
            problems.append(f"{doc}: {segment!r}: {problem}")
    assert not problems, "\n".join(problems)


def test_the_command_checker_catches_mistakes():
    assert check_tre_command(["project", "provision", "demo"]) is None
    assert check_tre_command(["grant", "request", "p", "d", "--columns", "t=*", "--age-bands"]) is None
    assert check_tre_command(["audit", "verify", "--json"]) is None
    assert check_tre_command(["project", "member", "add", "p", "u"]) is None
    assert check_tre_command(["project", "checker", "frobnicate", "p", "u"]) is not None
    assert check_tre_command(["network", "status", "--no-such-option"]) is not None
    assert check_tre_command(["no-such-group", "upgrade"]) is not None
    assert _tre_argv("TRE_ROOT=/srv/tre .venv/bin/tre audit verify") == ["audit", "verify"]
    assert _tre_argv("cp -a /srv/tre /backup") is None
    assert evidence_references() and all(f.startswith("tests/") for _, f, _ in evidence_references())


# --- the SATRE self-assessment adds up ------------------------------------------------------------

SATRE_ROW = re.compile(
    r"^\| (\d\.\d+\.\d\d) \| (Mandatory|Recommended|Optional) \| .* \| \*\*(.+?)\*\* \| (.*) \|$", re.M
)
STATUSES = ("met", "partly", "not met", "organisational")


def test_satre_summary_matches_its_tables():
    text = (DOCS / "satre.md").read_text(encoding="utf-8")
    rows = SATRE_ROW.findall(text)
    indexes = [r[0] for r in rows]
    assert len(indexes) == len(set(indexes)) == 101, "62 + 39 statements, each once"
    assert {r[2] for r in rows} <= set(STATUSES)
    counts = {s: sum(r[2] == s for r in rows) for s in STATUSES}
    summary = re.search(
        r"^\| \*\*All 101 statements\*\* \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| 101 \|$", text, re.M
    )
    assert summary, "the summary line for all statements is missing"
    assert tuple(int(n) for n in summary.groups()) == tuple(counts[s] for s in STATUSES)
    for index, _, status, evidence in rows:
        if status == "met":
            assert TEST_REF.search(evidence) or ".md" in evidence, f"{index} is met without evidence"


# --- the catalogues the docs publish -------------------------------------------------------------


def test_the_audit_catalogue_is_documented_exactly():
    """docs/operations.md lists every audit action the code can write, and only those."""
    from hub.kernel.audit_actions import AuditAction

    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    section = text.split("## Audit events", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([a-z_.]+)` \|", section, re.M))
    assert listed == {a.value for a in AuditAction}


def test_every_tre_setting_is_in_the_settings_object_and_documented():
    """No TRE_* value is read past the settings object, and operations.md lists each one."""
    from hub.kernel.settings import Settings

    known = set(Settings.variables())
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    section = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"^\| `(TRE_[A-Z_]+)` \|", section, re.M)) == known
    # Inside the workspace (the image's own package and config) a few variables are the container's.
    in_container = {"TRE_DATA_DIR", "TRE_PROJECT", "TRE_RELEASE", "TRE_MAX_UPLOAD_BYTES"}
    reads = re.compile(r"environ(?:\.get)?\(?\[?[\"'](TRE_[A-Z_]+)")
    bypass = []
    for path in _repository_texts():
        rel = _rel(path)
        if path.suffix != ".py" or rel.startswith("tests/") or rel == "hub/kernel/settings.py":
            continue
        for name in reads.findall(path.read_text(encoding="utf-8")):
            if not (rel.startswith("images/") and name in in_container):
                bypass.append(f"{rel}: {name}")
    assert not bypass, bypass
