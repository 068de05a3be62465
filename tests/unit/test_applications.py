"""Data access applications and permits (hub.registry.applications): the flow, its refusals, and that
a refusal saves nothing."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from hub import registry as reg
from hub.kernel.audit import AuditEvent
from hub.kernel.db import session_scope
from hub.kernel.signing import PERMITS, RELEASES, InvalidRecord, Signer, load_keyset, verify_record
from hub.registry import applications as apps
from hub.registry.models import Application, Grant, Membership, Permit, Project
from tests.fixtures_registry import ADMIN, CUSTODIAN, LEAD, RESEARCHER, future

PDF = b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n"


@pytest.fixture
def world(make_world):
    w = make_world(project="other-study", grant=None)
    with session_scope(w.settings) as s:
        # A second cohort from the same files, so a permit can cover two datasets.
        diabetes = reg.get_dataset(s, "diabetes")
        reg.register_dataset(
            s,
            CUSTODIAN,
            "labs-extract",
            [reg.SourceFile(t["name"], Path(t["source"])) for t in diabetes.tables],
            "national_id",
            title="Laboratory extract",
        )
        reg.add_user(s, ADMIN, "cus2", "Second custodian", is_custodian=True)
    return w


COMPLETE = {
    "title": "HbA1c and outcomes",
    "purpose": "art53-1-e",
    "description": "Does early HbA1c control change outcomes?",
    "benefit": "Better treatment targets.",
    "data_form": "pseudonymised",
    "data_form_reason": "Records must be followed over time.",
    "safeguards": "Analysis only inside the TRE.",
    "ethics_ref": "REC 26/LO/0001",
    "researchers": [RESEARCHER],
    "datasets": [
        {
            "dataset": "diabetes",
            "columns": {"patients": ["national_id", "sex"], "labs": ["national_id", "hba1c"]},
            "justifications": {
                "patients.national_id": "linking labs to patients",
                "patients.sex": "stratification",
                "labs.national_id": "linking",
            },
        },
        {
            "dataset": "labs-extract",
            "columns": {"labs": ["national_id", "hba1c", "atc_code"]},
            "justifications": {"labs.national_id": "linking", "labs.atc_code": "treatment"},
        },
    ],
}


def _draft(settings, slug: str = "hba1c-study", **fields) -> tuple[str, int]:
    with session_scope(settings) as s:
        a = apps.start_application(s, LEAD, slug, "draft")
        apps.update_application(s, LEAD, a.id, a.revision, {**COMPLETE, "ends_at": future(200), **fields})
        return a.id, a.revision


def _submitted(settings) -> tuple[str, int]:
    app_id, rev = _draft(settings)
    with session_scope(settings) as s:
        return app_id, apps.submit_application(s, LEAD, app_id, rev).revision


def _approve(settings, app_id: str, rev: int, actor: str = CUSTODIAN) -> str:
    decisions = [
        apps.DatasetDecision(
            "diabetes", columns={"patients": ["national_id", "sex"], "labs": ["national_id"]}
        ),
        apps.DatasetDecision("labs-extract", columns={"labs": ["national_id", "hba1c"]}, age_bands=False),
    ]
    with session_scope(settings) as s:
        permit = apps.approve_application(
            s, actor, app_id, rev, decisions, Signer(settings.keys_dir, PERMITS), issuer_name="Test HDAB"
        )
        return permit.id


def _actions(settings, since: int = 0) -> list[str]:
    with session_scope(settings, readonly=True) as s:
        return list(
            s.execute(
                select(AuditEvent.action).where(AuditEvent.id > since).order_by(AuditEvent.id)
            ).scalars()
        )


def _last_event(settings) -> int:
    with session_scope(settings, readonly=True) as s:
        return s.execute(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1)).scalar() or 0


def test_apply_ask_answer_approve_issues_a_verifiable_permit(world):
    settings = world.settings
    app_id, rev = _submitted(settings)
    with session_scope(settings) as s:
        rev = apps.ask_questions(s, CUSTODIAN, app_id, rev, "Why both sexes?").revision
    with session_scope(settings) as s:
        rev = apps.answer_questions(s, LEAD, app_id, rev, "Outcomes differ by sex.").revision
    before = _last_event(settings)
    permit_id = _approve(settings, app_id, rev)
    assert _actions(settings, before) == [
        "project.create",
        "member.add",
        "grant.approve",
        "grant.approve",
        "permit.issue",
        "application.approve",
    ]
    with session_scope(settings, readonly=True) as s:
        permit = s.get(Permit, permit_id)
        project = s.execute(select(Project).where(Project.slug == "hba1c-study")).scalar_one()
        assert project.lead.username == LEAD
        roles = {
            (m.user.username, m.role)
            for m in s.execute(select(Membership).where(Membership.project_id == project.id)).scalars()
        }
        assert roles == {(LEAD, "lead"), (RESEARCHER, "researcher")}
        grants = {
            g.dataset.name: g for g in s.execute(select(Grant).where(Grant.permit_id == permit_id)).scalars()
        }
        assert grants["diabetes"].columns == {"patients": ["national_id", "sex"], "labs": ["national_id"]}
        assert grants["labs-extract"].columns == {"labs": ["national_id", "hba1c"]}
        assert {g.status for g in grants.values()} == {"approved"}
        token = permit.token
        conversation = [(m.kind, m.author.username) for m in s.get(Application, app_id).messages]
    assert conversation == [("question", CUSTODIAN), ("answer", LEAD)]
    keyset = load_keyset(Signer(settings.keys_dir, PERMITS).keyset_path)
    claims = verify_record(token, keyset, PERMITS)
    assert claims["permit"] == permit_id and claims["project"] == "hba1c-study"
    assert [d["dataset"] for d in claims["datasets"]] == ["diabetes:1", "labs-extract:1"]
    assert claims["datasets"][0]["pseudonymised"]["patients"] == ["national_id"]
    # A permit is not a release record, nor the other way round.
    with pytest.raises(InvalidRecord):
        verify_record(token, keyset, RELEASES)
    release = Signer(settings.keys_dir, RELEASES).sign({"files": []})
    with pytest.raises(InvalidRecord):
        verify_record(release, load_keyset(Signer(settings.keys_dir, RELEASES).keyset_path), PERMITS)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"datasets": [{"dataset": "nope", "columns": {"patients": ["sex"]}}]}, "no dataset 'nope'"),
        ({"datasets": [{"dataset": "diabetes", "columns": {"patients": ["shoe_size"]}}]}, "no column"),
        ({"datasets": [{"dataset": "diabetes", "columns": {"ward": ["x"]}}]}, "no table"),
        ({"datasets": [{"dataset": "diabetes", "columns": {"patients": []}}]}, "at least one column"),
        ({"ends_at": future(-2)}, "must end in the future"),
        ({"purpose": "marketing"}, "purposes of EHDS Article 53"),
        ({"researchers": ["ghost"]}, "no active user 'ghost'"),
        ({"researchers": [LEAD]}, "do not name yourself"),
    ],
)
def test_bad_fields_are_refused_and_nothing_is_saved(world, fields, message):
    app_id, rev = _draft(world.settings)
    before = _last_event(world.settings)
    with pytest.raises(reg.RegistryError, match=message), session_scope(world.settings) as s:
        apps.update_application(s, LEAD, app_id, rev, {"title": "changed", **fields})
    with session_scope(world.settings, readonly=True) as s:
        assert s.get(Application, app_id).title == COMPLETE["title"]
    assert _last_event(world.settings) == before


def test_a_stale_page_is_refused(world):
    app_id, rev = _submitted(world.settings)
    with session_scope(world.settings) as s:
        apps.reject_application(s, "cus2", app_id, rev, "Not a health purpose.")
    with pytest.raises(apps.StaleForm, match="reload"), session_scope(world.settings) as s:
        apps.ask_questions(s, CUSTODIAN, app_id, rev, "A question on an old page")
    with pytest.raises(apps.StaleForm), session_scope(world.settings) as s:
        _approve(world.settings, app_id, rev)


def test_submission_names_what_is_missing(world):
    with session_scope(world.settings) as s:
        a = apps.start_application(s, LEAD, "empty-one", "")
        app_id, rev = a.id, a.revision
    missing = r"a title.*a description.*at least one dataset"
    with pytest.raises(reg.RegistryError, match=missing), session_scope(world.settings) as s:
        apps.submit_application(s, LEAD, app_id, rev)
    # A sensitive column without its reason.
    unjustified = [{"dataset": "diabetes", "columns": {"patients": ["postcode"]}}]
    app_id, rev = _draft(world.settings, slug="postcodes", datasets=unjustified)
    unjustified_message = r"justification for diabetes patients\.postcode"
    with pytest.raises(reg.RegistryError, match=unjustified_message), session_scope(world.settings) as s:
        apps.submit_application(s, LEAD, app_id, rev)


def test_a_name_already_taken_is_refused(world):
    with pytest.raises(reg.RegistryError, match="already taken"), session_scope(world.settings) as s:
        apps.start_application(s, LEAD, "other-study", "x")  # an existing project
    _draft(world.settings, slug="claimed")
    with pytest.raises(reg.RegistryError, match="already taken"), session_scope(world.settings) as s:
        apps.start_application(s, RESEARCHER, "claimed", "x")  # another lead's open application
    with pytest.raises(reg.RegistryError, match="invalid project name"), session_scope(world.settings) as s:
        apps.start_application(s, LEAD, "../etc", "x")


def test_the_protocol_must_be_a_small_pdf(world):
    app_id, rev = _draft(world.settings)
    with pytest.raises(reg.RegistryError, match="must be a PDF"), session_scope(world.settings) as s:
        apps.attach_protocol(s, LEAD, app_id, rev, "protocol.pdf", b"MZ\x90\x00 not a pdf")
    with pytest.raises(reg.RegistryError, match="the limit is"), session_scope(world.settings) as s:
        apps.attach_protocol(s, LEAD, app_id, rev, "big.pdf", PDF + b"0" * apps.MAX_ATTACHMENT_BYTES)
    with session_scope(world.settings) as s:
        a = apps.attach_protocol(s, LEAD, app_id, rev, "../../evil/protocol v2.pdf", PDF)
        assert a.attachment_name == "protocol v2.pdf"


@pytest.mark.parametrize(
    ("actor", "why"),
    [
        (LEAD, "only a data custodian"),  # the applicant, not a custodian
        (ADMIN, "only a data custodian"),  # running the TRE does not make one a custodian
        (RESEARCHER, "There is no application"),  # cannot even see it
    ],
)
def test_who_cannot_decide(world, actor, why):
    app_id, rev = _submitted(world.settings)
    with pytest.raises(reg.NotAllowed, match=why), session_scope(world.settings) as s:
        apps.ask_questions(s, actor, app_id, rev, "?")


def test_a_custodian_who_applies_or_is_named_cannot_decide(world):
    with session_scope(world.settings) as s:
        reg.set_user_role(s, ADMIN, LEAD, "custodian", True)
    app_id, rev = _submitted(world.settings)
    with pytest.raises(reg.NotAllowed, match="asked for this"), session_scope(world.settings) as s:
        apps.approve_application(s, LEAD, app_id, rev, [], Signer(world.settings.keys_dir, PERMITS))
    with session_scope(world.settings) as s:
        rev = apps.return_application(s, CUSTODIAN, app_id, rev, "Name the second custodian too.").revision
    with session_scope(world.settings) as s:
        rev = apps.update_application(s, LEAD, app_id, rev, {"researchers": [RESEARCHER, "cus2"]}).revision
        rev = apps.submit_application(s, LEAD, app_id, rev).revision
    with pytest.raises(reg.NotAllowed, match="named as a researcher"), session_scope(world.settings) as s:
        apps.ask_questions(s, "cus2", app_id, rev, "?")


def test_drafts_are_the_leads_alone(world):
    app_id, _ = _draft(world.settings)
    for viewer in (CUSTODIAN, ADMIN, RESEARCHER):
        with pytest.raises(apps.NoSuchApplication), session_scope(world.settings, readonly=True) as s:
            apps.get_application(s, viewer, app_id)
    with pytest.raises(apps.NoSuchApplication), session_scope(world.settings, readonly=True) as s:
        apps.get_application(s, LEAD, "a-000000000000")


def test_only_asked_for_columns_can_be_approved(world):
    app_id, rev = _submitted(world.settings)
    too_much = [
        apps.DatasetDecision("diabetes", columns={"patients": ["national_id", "postcode"]}),
        apps.DatasetDecision("labs-extract", approve=False),
    ]
    with (
        pytest.raises(reg.RegistryError, match="postcode were not asked for"),
        session_scope(world.settings) as s,
    ):
        apps.approve_application(
            s, CUSTODIAN, app_id, rev, too_much, Signer(world.settings.keys_dir, PERMITS)
        )
    with (
        pytest.raises(reg.RegistryError, match="decide every requested dataset"),
        session_scope(world.settings) as s,
    ):
        apps.approve_application(
            s, CUSTODIAN, app_id, rev, too_much[:1], Signer(world.settings.keys_dir, PERMITS)
        )
    with session_scope(world.settings, readonly=True) as s:
        assert s.execute(select(Project).where(Project.slug == "hba1c-study")).first() is None


def test_a_new_version_extends_the_project_and_supersedes_the_permit(world):
    settings = world.settings
    app_id, rev = _submitted(settings)
    first = _approve(settings, app_id, rev)
    with session_scope(settings) as s:
        v2 = apps.start_new_version(s, LEAD, "hba1c-study")
        new_end = future(300)
        v2 = apps.update_application(s, LEAD, v2.id, v2.revision, {"ends_at": new_end})
        v2_id, rev = v2.id, apps.submit_application(s, LEAD, v2.id, v2.revision).revision
    second = _approve(settings, v2_id, rev)
    with session_scope(settings, readonly=True) as s:
        assert s.get(Permit, first).status == "superseded"
        assert s.get(Permit, second).status == "issued"
        old = s.execute(select(Grant.status).where(Grant.permit_id == first)).scalars().all()
        assert old == ["revoked", "revoked"]
        project = s.execute(select(Project).where(Project.slug == "hba1c-study")).scalar_one()
        assert abs(project.expires_at - new_end) < timedelta(seconds=1)
    with pytest.raises(reg.NotAllowed, match="that you lead"), session_scope(settings) as s:
        apps.start_new_version(s, RESEARCHER, "hba1c-study")


def test_tre_permit_verify_checks_a_permit_offline(world, tmp_path):
    from typer.testing import CliRunner

    from hub.cli import app

    app_id, rev = _submitted(world.settings)
    permit_id = _approve(world.settings, app_id, rev)
    runner = CliRunner()
    exported = runner.invoke(app, ["permit", "export", permit_id])
    assert exported.exit_code == 0, exported.output
    permit = tmp_path / "permit.jwt"
    permit.write_text(exported.stdout)
    good = runner.invoke(app, ["permit", "verify", str(permit)])
    assert good.exit_code == 0 and f"verified permit {permit_id}" in good.stdout, good.output
    assert "diabetes:1  patients: national_id, sex; labs: national_id" in good.stdout
    listed = runner.invoke(app, ["permit", "list", "--json"])
    assert json.loads(listed.stdout)[0]["id"] == permit_id

    # A widened permit (a column added to its claims, signature kept) does not verify.
    head, body, sig = exported.stdout.strip().split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["datasets"][0]["columns"]["patients"].append("postcode")
    widened = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    permit.write_text(f"{head}.{widened}.{sig}")
    forged = runner.invoke(app, ["permit", "verify", str(permit)])
    assert forged.exit_code != 0 and "NOT VERIFIED" in forged.stderr
    # Nor does a genuine permit against someone else's keys, nor a release record.
    other = Signer(tmp_path / "other", PERMITS)
    other.ensure_key()
    permit.write_text(exported.stdout)
    wrong = runner.invoke(app, ["permit", "verify", str(permit), "--keyset", str(other.keyset_path)])
    assert wrong.exit_code != 0 and "unknown key" in wrong.stderr
    permit.write_text(Signer(world.settings.keys_dir, RELEASES).sign({"permit": "p-x"}))
    release = runner.invoke(app, ["permit", "verify", str(permit)])
    assert release.exit_code != 0 and "NOT VERIFIED" in release.stderr


def test_a_permit_is_revoked_when_its_last_grant_is(world):
    settings = world.settings
    permit_id = _approve(settings, *_submitted(settings))
    with session_scope(settings, readonly=True) as s:
        grants = s.execute(select(Grant.id).where(Grant.permit_id == permit_id)).scalars().all()
    since = _last_event(settings)
    with session_scope(settings) as s:
        reg.revoke_grant(s, CUSTODIAN, grants[0], "a source was withdrawn")
    with session_scope(settings, readonly=True) as s:
        assert s.get(Permit, permit_id).status == "issued"  # the other dataset is still in force
    with session_scope(settings) as s:
        reg.revoke_grant(s, CUSTODIAN, grants[1], "the study ended early")
    with session_scope(settings, readonly=True) as s:
        assert s.get(Permit, permit_id).status == "revoked"
    assert _actions(settings, since) == ["grant.revoke", "grant.revoke", "permit.revoke"]


def test_closing_the_project_revokes_its_permit(world):
    settings = world.settings
    permit_id = _approve(settings, *_submitted(settings))
    since = _last_event(settings)
    with session_scope(settings) as s:
        reg.change_project_status(s, LEAD, "hba1c-study", "close", "finished")
    with session_scope(settings, readonly=True) as s:
        assert s.get(Permit, permit_id).status == "revoked"
    assert _actions(settings, since) == ["project.close", "permit.revoke"]
