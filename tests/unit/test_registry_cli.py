"""The registry's command line, end to end on a temporary TRE_ROOT: the happy path, then every kind of
bad input giving one line of error, a non-zero exit and no change at all in the database."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from hub.kernel.audit import AuditEvent
from hub.kernel.db import session_scope
from hub.kernel.settings import get_settings
from hub.registry.models import Dataset, Grant, Membership, Project, User
from tests.fixtures_registry import write_cohort

runner = CliRunner()


# Read-only commands have no acting user (and no --as option).
READ_ONLY = {
    ("user", "list"),
    ("dataset", "list"),
    ("dataset", "show"),
    ("dataset", "verify"),
    ("project", "list"),
    ("project", "show"),
    ("grant", "list"),
    ("audit", "show"),
    ("audit", "verify"),
    ("catalog", "export"),
}


def tre(*args: str, actor: str | None = "admin"):
    from hub.cli import app

    acts = actor and tuple(args[:2]) not in READ_ONLY
    argv = list(args) + (["--as", actor] if acts else [])
    return runner.invoke(app, argv, catch_exceptions=False)


def ok(*args: str, actor: str | None = "admin"):
    result = tre(*args, actor=actor)
    assert result.exit_code == 0, result.output + result.stderr
    return result


def ok_json(*args: str, actor: str | None = "admin"):
    return json.loads(ok(*args, "--json", actor=actor).stdout)


def counts() -> dict[str, int]:
    with session_scope(get_settings()) as s:
        return {
            m.__tablename__: s.execute(select(func.count()).select_from(m)).scalar_one()
            for m in (User, Dataset, Project, Membership, Grant, AuditEvent)
        }


def refused(*args: str, actor: str | None = "admin", match: str = "") -> str:
    """Run a command that must fail cleanly: one-line error, exit != 0, database unchanged."""
    before = counts()
    result = tre(*args, actor=actor)
    assert result.exit_code != 0, result.output
    message = result.stderr.strip()
    assert message.startswith("error: "), message
    assert "\n" not in message, message
    assert "Traceback" not in result.output
    assert match.lower() in message.lower(), message
    assert counts() == before
    return message


@pytest.fixture
def cli_world(tre_root, tmp_path):
    """Users, a cohort dataset, a project with a researcher and a checker, all made through the CLI."""
    files = write_cohort(tmp_path / "src")
    ok("user", "add", "admin", "--admin", "--name", "Ada Admin", actor="root")
    ok("user", "add", "cus", "--custodian")
    ok("user", "add", "lead")
    ok("user", "add", "res")
    ok("user", "add", "chk")
    ok(
        "dataset",
        "add",
        "diabetes",
        "--table",
        f"patients={files['patients']}",
        "--table",
        f"labs={files['labs']}",
        "--identifier-column",
        "national_id",
        "--title",
        "Diabetes cohort",
        actor="cus",
    )
    ok("project", "create", "diab-study", "--title", "Diabetes study", "--lead", "lead", "--expires", "+365d")
    ok("project", "member", "add", "diab-study", "res", actor="lead")
    ok("project", "checker", "assign", "diab-study", "chk", actor="cus")
    return files


def _request(*extra: str, actor: str = "lead"):
    return tre(
        "grant",
        "request",
        "diab-study",
        "diabetes",
        "-c",
        "patients=*",
        "-c",
        "labs=national_id,hba1c",
        *extra,
        actor=actor,
    )


def _grant_id() -> str:
    result = _request("--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["id"]


# ----------------------------------------------------------------------------------------------------
# Happy path


def test_full_flow(cli_world, tmp_path):
    users = {u["username"]: u for u in ok_json("user", "list")}
    assert users["admin"]["is_admin"] and users["cus"]["is_custodian"] and not users["res"]["is_admin"]

    ds = ok_json("dataset", "show", "diabetes")
    assert ds["ref"] == "diabetes:1" and ds["unique_individuals"] == 20 and ds["row_count"] == 80
    patients = next(t for t in ds["tables"] if t["name"] == "patients")
    assert [c["name"] for c in patients["columns"]] == ["national_id", "birth_date", "sex", "postcode"]
    assert patients["content_hash"].startswith("sha256:")
    labs = next(t for t in ds["tables"] if t["name"] == "labs")
    assert {c["name"]: c.get("coding_system") for c in labs["columns"]}["atc_code"] == "ATC"

    grant_id = _grant_id()
    grant = ok_json("grant", "approve", grant_id, "--note", "ethics ref 42", actor="cus")
    assert grant["status"] == "approved" and grant["approved_by"] == "cus"
    assert grant["columns"]["labs"] == ["national_id", "hba1c"]
    assert grant["pseudonymise"] == {"patients": ["national_id"], "labs": ["national_id"]}
    assert grant["remove_opted_out"] is True

    project = ok_json("project", "show", "diab-study")
    assert project["members"] == {"lead": ["lead"], "researcher": ["res"], "checker": ["chk"]}
    assert [(g["status"], g["active"]) for g in project["grants"]] == [("approved", True)]
    assert project["open"] is True
    assert [g["id"] for g in ok_json("grant", "list", "--project", "diab-study", "--status", "approved")] == [
        grant_id
    ]

    verified = ok_json("audit", "verify")
    assert verified["ok"] and verified["events"] == counts()["audit_events"]
    actions = [e["action"] for e in ok_json("audit", "show", "--limit", "100")]
    assert actions[:2] == ["user.add", "user.add"] and actions[-2:] == ["grant.request", "grant.approve"]
    assert [e["actor"] for e in ok_json("audit", "show", "--action", "grant.")] == ["lead", "cus"]
    assert len(ok_json("audit", "show", "--object", "project:diab-study")) == 3
    assert ok_json("audit", "show", "--actor", "lead", "--limit", "1")[0]["action"] == "grant.request"
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert ok_json("audit", "show", "--since", tomorrow) == []
    assert len(ok_json("audit", "show", "--until", tomorrow, "--limit", "1000")) == counts()["audit_events"]

    out = tmp_path / "catalog.jsonld"
    ok("catalog", "export", "--output", str(out))
    doc = json.loads(out.read_text())
    assert "@context" in doc
    [node] = doc["dcat:dataset"]
    assert node["@type"] == "dcat:Dataset" and node["dct:title"] == "Diabetes cohort"
    assert node["healthdcatap:numberOfUniqueIndividuals"]["@value"] == "20"
    assert node["healthdcatap:numberOfRecords"]["@value"] == "80"
    assert int(node["healthdcatap:minTypicalAge"]["@value"]) <= int(
        node["healthdcatap:maxTypicalAge"]["@value"]
    )
    assert node["healthdcatap:hasCodingSystem"] == [{"@id": "https://www.wikidata.org/entity/P267"}]
    assert node["dct:accessRights"]["@id"].endswith("NON_PUBLIC")


def test_actor_from_environment(cli_world, monkeypatch):
    monkeypatch.setenv("TRE_ACTOR", "lead")
    result = tre("project", "member", "add", "diab-study", "cus", actor=None)
    assert result.exit_code == 0, result.stderr
    assert ok_json("audit", "show", "--limit", "1")[0]["actor"] == "lead"


def test_readding_unchanged_sources_is_a_no_op_and_changed_schema_is_a_new_version(cli_world):
    args = ["dataset", "add", "diabetes", "-t", f"patients={cli_world['patients']}", "-t"]
    args += [f"labs={cli_world['labs']}", "-i", "national_id"]
    before = counts()
    assert ok_json(*args, actor="cus")["created"] is False
    assert counts() == before

    patients = cli_world["patients"]
    lines = patients.read_text().splitlines()
    patients.write_text("\n".join([lines[0] + ",smoker"] + [line + ",no" for line in lines[1:]]) + "\n")
    again = ok_json(*args, actor="cus")
    assert again["created"] and again["ref"] == "diabetes:2" and again["title"] == "Diabetes cohort"
    assert [d["ref"] for d in ok_json("dataset", "list", "--all-versions")] == ["diabetes:1", "diabetes:2"]
    assert [d["ref"] for d in ok_json("dataset", "list")] == ["diabetes:2"]
    # The old version's sources changed under it: verifying says so and what to do.
    assert "re-register" in refused("dataset", "verify", "diabetes:1", match="changed since registration")
    ok("dataset", "verify", "diabetes:2")


def test_optout_dataset(cli_world, tmp_path):
    import duckdb

    path = tmp_path / "optout.parquet"
    con = duckdb.connect()  # own connection: the module-level default one is shared with other tests
    con.execute(f"COPY (SELECT '9000000003' AS national_id) TO '{path}' (FORMAT parquet)")
    con.close()
    ds = ok_json("dataset", "add", "optout", "-t", f"optout={path}", "-i", "national_id", "--kind", "optout")
    assert ds["kind"] == "optout" and ds["tables"][0]["format"] == "parquet"
    refused("grant", "request", "diab-study", "optout", "-c", "optout=*", actor="lead", match="opt-out list")
    # Not research data, so not in the public catalogue.
    doc = json.loads(ok("catalog", "export").stdout)
    assert [n["dct:identifier"] for n in doc["dcat:dataset"]] == ["diabetes:1"]


def test_project_status_and_limits(cli_world):
    row = ok_json("project", "set-limits", "diab-study", "--mem", "4g", "--cpu", "2")
    assert row["limits"] == {
        "mem": "4g",
        "cpu": 2.0,
        "pids": 256,
        "read_bytes": 2_000_000,
        "daily_bytes": 50_000_000,
        "jobs": 2,
        "job_seconds": 14_400,
        "rerun_seconds": None,  # the site's TRE_RERUN_SECONDS
    }
    jobs = ok_json("project", "set-limits", "diab-study", "--jobs", "1", "--job-seconds", "600")
    assert (jobs["limits"]["jobs"], jobs["limits"]["job_seconds"]) == (1, 600)
    guard = ok_json(
        "project", "set-limits", "diab-study", "--read-bytes", "500000", "--daily-bytes", "10000000"
    )
    assert (guard["limits"]["read_bytes"], guard["limits"]["daily_bytes"]) == (500_000, 10_000_000)
    refused("project", "set-limits", "diab-study", "--daily-bytes", "10", match="at least 1000")
    assert ok_json("project", "suspend", "diab-study", "--reason", "audit")["status"] == "suspended"
    refused("grant", "request", "diab-study", "diabetes", "-c", "patients=*", actor="lead", match="suspended")
    assert ok_json("project", "resume", "diab-study")["status"] == "active"
    refused("project", "resume", "diab-study", match="cannot be resumed")
    assert [p["status"] for p in ok_json("project", "list")] == ["active"]


def test_close_and_revoke_rebuild_through_provisioning(cli_world):
    import hub.enforcement.withdraw
    import hub.provisioning

    calls: list[tuple[str, str]] = []

    def fake_provision(settings, slug, actor, progress=None):
        progress("build", 1, 2)
        progress("publish", 2, 2)
        calls.append((slug, actor))

    with pytest.MonkeyPatch.context() as patched:
        # The CLI's `project provision`, and the withdrawal operations every interface uses.
        patched.setattr(hub.provisioning, "provision_project", fake_provision)
        patched.setattr(hub.enforcement.withdraw, "provision_project", fake_provision)
        grant_id = _grant_id()
        ok("grant", "approve", grant_id, actor="cus")
        ok("grant", "revoke", grant_id, "--reason", "consent withdrawn", actor="cus")
        ok("project", "provision", "diab-study", actor="cus")
        ok("project", "close", "diab-study")
    assert calls == [("diab-study", "cus"), ("diab-study", "cus"), ("diab-study", "admin")]
    # the real provisioning checks who asks before it does anything (the lead could run the
    # delete-only build of her closed project; a researcher cannot)
    refused(
        "project", "provision", "diab-study", actor="res", match="only an administrator or data custodian"
    )


def test_provision_for_real_then_open_the_workspace(cli_world, tmp_path):
    from hub.registry.access import workspace_permit

    optout = tmp_path / "optout.csv"
    optout.write_text("national_id\n9000000003\n")
    ok(
        "dataset",
        "add",
        "optout",
        "-t",
        f"optout={optout}",
        "-i",
        "national_id",
        "--kind",
        "optout",
        actor="cus",
    )
    ok("grant", "approve", _grant_id(), actor="cus")
    result = ok("project", "provision", "diab-study", actor="cus")
    assert "release 1 is current" in result.stdout
    with session_scope(get_settings(), readonly=True) as s:
        permit = workspace_permit(s, "res", "diab-study", get_settings())
    assert permit.release_number == 1 and (permit.release_dir / "manifest.json").is_file()
    assert ok_json("audit", "show", "--action", "project.provision")[0]["actor"] == "cus"


def test_provisioning_failure_is_one_line_and_keeps_the_revocation(cli_world, monkeypatch):
    import hub.enforcement.withdraw
    from hub.provisioning import ProvisioningError

    def failing(settings, slug, actor, progress=None):
        raise ProvisioningError("source labs.csv changed since registration")

    monkeypatch.setattr(hub.enforcement.withdraw, "provision_project", failing)
    grant_id = _grant_id()
    ok("grant", "approve", grant_id, actor="cus")
    result = tre("grant", "revoke", grant_id, actor="cus")
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0
    message = result.stderr
    assert "rebuilding diab-study's release failed" in message and "old data is still on disk" in message
    assert "labs.csv changed" in message
    assert ok_json("grant", "list")[0]["status"] == "revoked"  # access ends even if the rebuild failed


def test_user_disable_enable_and_roles(cli_world):
    assert ok_json("user", "disable", "res")["disabled"] is True
    refused("project", "member", "add", "diab-study", "res", actor="lead", match="disabled")
    assert ok_json("user", "enable", "res")["disabled"] is False
    assert ok_json("user", "grant-role", "lead", "custodian")["is_custodian"] is True
    assert ok_json("user", "grant-role", "lead", "custodian", "--revoke")["is_custodian"] is False
    refused("user", "grant-role", "admin", "admin", "--revoke", match="themselves")
    ok("user", "grant-role", "cus", "admin")
    ok("user", "grant-role", "admin", "admin", "--revoke", actor="cus")
    refused("user", "grant-role", "cus", "admin", "--revoke", actor="cus", match="themselves")


# ----------------------------------------------------------------------------------------------------
# Bad input: one line, non-zero exit, nothing written


def test_first_user_must_be_admin(tre_root):
    result = tre("user", "add", "someone", actor="root")
    assert result.exit_code == 1 and "first user must be an administrator" in result.stderr


@pytest.mark.parametrize(
    "name", ["Bad", "a", "ab-", "9lives", "under_score", "x" * 41, "white space", "egress--service", "a--b"]
)
def test_invalid_slugs_refused(cli_world, name):
    refused("user", "add", name, match="invalid user name")
    refused(
        "project",
        "create",
        name,
        "--title",
        "t",
        "--lead",
        "lead",
        "--expires",
        "+9d",
        match="invalid project",
    )
    refused(
        "dataset", "add", name, "-t", f"patients={cli_world['patients']}", "-i", "national_id", actor="cus"
    )


def test_unknown_actor_and_duplicates_refused(cli_world):
    refused("user", "add", "newbie", actor="mallory", match="not a registered user")
    refused("user", "add", "res", match="already exists")
    refused(
        "project",
        "create",
        "diab-study",
        "--title",
        "t",
        "--lead",
        "lead",
        "--expires",
        "+9d",
        match="exists",
    )
    refused("project", "member", "add", "diab-study", "res", actor="lead", match="already")
    refused("project", "member", "remove", "diab-study", "chk", actor="lead", match="not a researcher")
    refused("project", "show", "nope-nope", match="no project")


@pytest.mark.parametrize(
    "content,match",
    [
        ("national_id,sex\n1,F\n2,M,extra\n3,F\n", "cannot read"),  # ragged row
        ('national_id,sex\n1,"F\n2,M\n', "cannot read"),  # unterminated quote
        ("national_id,sex\n1,F\n1,M\n", "duplicate national_id"),
        ("national_id,sex\n1,F\n,M\n", "have no national_id"),
        ("person,sex\n1,F\n", "has no column 'national_id'"),
        ("national_id,national_id\n1,2\n", "duplicate column names"),
        ("national_id,,sex\n1,2,F\n", "blank column name"),
        ("", "is empty"),
    ],
    ids=[
        "ragged",
        "quote",
        "duplicate-ids",
        "missing-id",
        "no-id-column",
        "dup-columns",
        "blank-column",
        "empty",
    ],
)
def test_bad_source_files_refused(cli_world, tmp_path, content, match):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    message = refused("dataset", "add", "broken", "-t", f"patients={path}", "-i", "national_id", actor="cus")
    assert re.search(match, message), message


def test_missing_unreadable_and_unsupported_sources_refused(cli_world, tmp_path):
    def add(path: Path, match: str) -> None:
        refused(
            "dataset",
            "add",
            "broken",
            "-t",
            f"patients={path}",
            "-i",
            "national_id",
            actor="cus",
            match=match,
        )

    add(tmp_path / "missing.csv", "not found")
    add(tmp_path, "not a regular file")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 this is not parquet at all, just bytes" * 3)
    add(garbage, "cannot read")
    other = tmp_path / "data.xlsx"
    other.write_text("x")
    add(other, "unsupported format")
    # A good first table does not get registered when the second one is bad.
    refused(
        "dataset",
        "add",
        "broken",
        "-t",
        f"patients={cli_world['patients']}",
        "-t",
        f"labs={garbage}",
        "-i",
        "national_id",
        actor="cus",
        match="cannot read",
    )
    refused("dataset", "add", "broken", "-t", "patients", "-i", "national_id", actor="cus", match="KEY=VALUE")
    refused(
        "dataset",
        "add",
        "broken",
        "-t",
        f"patients={cli_world['patients']}",
        "-i",
        "national_id",
        actor="res",
        match="only an administrator or data custodian",
    )


def test_bad_grant_requests_refused(cli_world):
    refused(
        "grant",
        "request",
        "diab-study",
        "diabetes",
        "-c",
        "patients=national_id,shoe_size",
        actor="lead",
        match="no column(s) shoe_size",
    )
    refused(
        "grant",
        "request",
        "diab-study",
        "diabetes",
        "-c",
        "visits=*",
        actor="lead",
        match="no table 'visits'",
    )
    refused(
        "grant", "request", "diab-study", "diabetes:7", "-c", "patients=*", actor="lead", match="no dataset"
    )
    refused(
        "grant",
        "request",
        "diab-study",
        "diabetes",
        "-c",
        "patients=*",
        "--expires",
        "2001-01-01",
        actor="lead",
        match="in the past",
    )
    refused(
        "grant",
        "request",
        "diab-study",
        "diabetes",
        "-c",
        "patients=*",
        "--expires",
        "+4000d",
        actor="lead",
        match="outlast",
    )
    refused(
        "grant",
        "request",
        "diab-study",
        "diabetes",
        "-c",
        "patients=*",
        "--expires",
        "soon",
        actor="lead",
        match="not a date",
    )
    refused(
        "grant",
        "request",
        "diab-study",
        "diabetes",
        "-c",
        "labs=hba1c",
        "--age-bands",
        actor="lead",
        match="birth date",
    )
    refused(
        "grant",
        "request",
        "diab-study",
        "diabetes",
        "-c",
        "labs=hba1c",
        "--pseudonymise",
        "labs.atc_code",
        actor="lead",
        match="not among the requested",
    )
    refused(
        "grant",
        "request",
        "diab-study",
        "diabetes",
        "-c",
        "patients=*",
        "--date-shift-days",
        "0",
        actor="lead",
        match="between 1",
    )
    refused(
        "grant", "request", "diab-study", "diabetes", "-c", "patients=*", actor="res", match="project lead"
    )


def test_grant_decisions_enforce_separation_of_duties(cli_world):
    grant_id = _grant_id()
    refused("grant", "approve", grant_id, actor="lead", match="only an administrator or data custodian")
    refused("grant", "approve", grant_id, actor="res", match="only an administrator or data custodian")
    refused("grant", "approve", "g-000000000000", actor="cus", match="no grant")
    # A custodian who requested it (as admin) cannot approve it either.
    ok("user", "grant-role", "cus", "admin")
    own = _request("--json", actor="cus")
    assert own.exit_code == 0, own.stderr
    refused("grant", "approve", json.loads(own.stdout)["id"], actor="cus", match="asked for this")
    ok("grant", "reject", grant_id, actor="cus")
    refused("grant", "approve", grant_id, actor="cus", match="only a requested grant")
    refused("grant", "revoke", grant_id, actor="cus", match="already rejected")


def test_project_rules_refused(cli_world):
    def create(lead: str = "lead", expires: str = "+9d", actor: str = "admin", match: str = "") -> None:
        args = ["project", "create", "other", "--title", "t", "--lead", lead, "--expires", expires]
        refused(*args, actor=actor, match=match)

    create(expires="2000-01-01", match="past")
    create(lead="ghost", match="no user")
    create(lead="admin", match="cannot appoint themselves")
    create(actor="cus", match="only an administrator")
    refused(
        "project",
        "checker",
        "assign",
        "diab-study",
        "res",
        actor="lead",
        match="cannot appoint output checkers",
    )
    refused(
        "project", "checker", "assign", "diab-study", "cus", actor="cus", match="cannot appoint themselves"
    )
    refused("project", "set-limits", "diab-study", "--mem", "lots", match="memory limit")
    refused("project", "set-limits", "diab-study", match="at least one")
    refused("project", "set-limits", "diab-study", "--pids", "2", actor="lead", match="only an administrator")
    ok("project", "close", "diab-study")
    refused("project", "member", "add", "diab-study", "cus", actor="lead", match="closed")
    refused("project", "suspend", "diab-study", match="closed")


def test_audit_verify_reports_tampering(cli_world):
    from sqlalchemy import update

    with session_scope(get_settings()) as s:
        s.execute(update(AuditEvent).where(AuditEvent.id == 3).values(actor="mallory"))
    result = tre("audit", "verify", actor=None)
    assert result.exit_code == 1
    assert "event 3" in result.stderr and "edited" in result.stderr
    report = json.loads(tre("audit", "verify", "--json", actor=None).stdout)
    assert report["ok"] is False and report["problems"]


def test_project_sdc_rules_override_the_checks_for_that_project(cli_world, tmp_path):
    """An administrator raises the threshold for one project: its checks use it, and it is audited."""
    table = tmp_path / "counts.csv"
    table.write_text("diabetes_type,n\ntype_1,12\ntype_2,480\n")

    def verdict() -> str:
        result = ok("egress", "check", str(table), "--project", "diab-study", "--json", actor=None)
        return json.loads(result.stdout)["files"][0]["verdict"]

    assert verdict() == "pass"  # 12 >= the default threshold of 10
    shown = ok_json("project", "sdc-rules", "diab-study", "--set", "threshold=15", "--set", "dominance_k=85")
    assert shown["overrides"] == {"threshold": 15, "dominance_k": 85}
    assert shown["rules"]["threshold"] == 15 and shown["rules"]["p_percent"] == 10.0
    assert verdict() == "fail"
    event = ok_json("audit", "show", "--action", "project.sdc_rules")[0]
    assert event["actor"] == "admin" and event["details"]["sdc_config"]["threshold"] == 15

    refused("project", "sdc-rules", "diab-study", "--set", "threshold=5", actor="lead", match="administrator")
    refused("project", "sdc-rules", "diab-study", "--set", "treshold=5", match="unknown SDC setting")
    ok("project", "sdc-rules", "diab-study", "--reset")
    assert verdict() == "pass"


def test_a_custodian_catalogues_a_dataset_under_its_health_categories(cli_world):
    listed = ok_json("dataset", "categories", actor=None)
    assert (
        len(listed) == 17
        and {"code": "EHRS", "label": "Electronic health records"}.items() <= listed[0].items()
    )
    patients = f"patients={cli_world['patients']}"
    ds = ok_json(
        "dataset", "add", "registry-extract", "-t", patients, "-i", "national_id",
        "--category", "rqsh", "--category", "EHRS", actor="cus",
    )  # fmt: skip
    assert ds["health_categories"] == ["EHRS", "RQSH"]
    refused(
        "dataset", "add", "other-extract", "-t", patients, "-i", "national_id", "--category", "GENOMICS",
        actor="cus", match="unknown health category GENOMICS",
    )  # fmt: skip
