"""Registry operations and the database layer on SQLite (PostgreSQL: tests/integration)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from hub import registry as reg
from hub.kernel import audit
from hub.kernel.audit import AuditEvent
from hub.kernel.db import engine_for, session_scope, upgrade
from hub.registry.models import Dataset, Membership, Project
from hub.registry.permissions import NotAllowed
from tests.fixtures_registry import ADMIN, CUSTODIAN, LEAD, RESEARCHER, future, write_cohort


def test_upgrade_is_idempotent_and_matches_models(registry):
    from alembic import command

    from tests.fixtures_registry import schema_check_config

    upgrade(registry)
    command.check(schema_check_config(registry.db_url))  # raises if the models drifted from the migrations


def test_sqlite_connections_use_wal_and_foreign_keys(registry):
    with engine_for(registry).connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000


def test_naive_datetimes_are_refused(registry, make_users):
    make_users()
    with pytest.raises(reg.RegistryError, match="timezone-aware"), session_scope(registry) as s:
        reg.create_project(s, ADMIN, "naive-time", "t", LEAD, datetime(2999, 1, 1))


def test_every_change_writes_one_audit_event(make_world):
    world = make_world()
    with session_scope(world.settings) as s:
        actions = s.execute(select(AuditEvent.action).order_by(AuditEvent.id)).scalars().all()
    assert actions == [
        "user.add",
        "user.add",
        "user.add",
        "user.add",
        "user.add",
        "dataset.register",
        "project.create",
        "member.add",
        "checker.assign",
        "grant.request",
        "grant.approve",
    ]


def test_refused_change_writes_nothing(make_world):
    world = make_world()
    with session_scope(world.settings) as s:
        before = s.execute(select(func.count(AuditEvent.id))).scalar_one()
    with pytest.raises(NotAllowed), session_scope(world.settings) as s:
        reg.add_member(s, LEAD, world.project, "custodian")  # allowed part
        reg.add_member(s, LEAD, world.project, "admin", role="checker")  # refused: rolls back both
    with session_scope(world.settings) as s:
        assert s.execute(select(func.count(AuditEvent.id))).scalar_one() == before
        assert s.execute(select(func.count(Membership.id))).scalar_one() == 3


def test_dataset_facts(make_world):
    world = make_world()
    with session_scope(world.settings) as s:
        ds = reg.get_dataset(s, "diabetes")
        assert (ds.version, ds.person_table, ds.unique_individuals, ds.row_count) == (1, "patients", 20, 80)
        assert ds.created_at.tzinfo is not None
        assert ds.profile["birth_date_column"] == "birth_date"
        assert 0 < ds.profile["min_typical_age"] <= ds.profile["max_typical_age"] < 120
        patients = ds.table("patients")
        assert patients["identifier_column"] == "national_id" and patients["format"] == "csv"
        sens = {c["name"]: c["sensitivity"] for c in patients["columns"]}
        assert sens == {
            "national_id": "identifier",
            "birth_date": "quasi-identifier",
            "sex": "quasi-identifier",
            "postcode": "quasi-identifier",
        }
        assert ds.content_hash.startswith("sha256:") and len(ds.content_hash) == 71
        reg.verify_dataset_sources(ds)


def test_sensitivity_and_coding_overrides(registry, make_users, tmp_path):
    make_users()
    files = write_cohort(tmp_path / "src")
    with session_scope(registry) as s:
        ds, created = reg.register_dataset(
            s,
            CUSTODIAN,
            "people",
            [reg.SourceFile("patients", files["patients"])],
            "national_id",
            sensitivity={"patients.sex": "sensitive"},
            coding={"postcode": "NUTS"},
        )
        assert created
        columns = {c["name"]: c for c in ds.tables[0]["columns"]}
    assert columns["sex"]["sensitivity"] == "sensitive"
    assert columns["postcode"]["coding_system"] == "NUTS"
    for bad in (
        {"sensitivity": {"sex": "secret"}},
        {"sensitivity": {"shoe": "other"}},
        {"coding": {"shoe": "X"}},
    ):
        with pytest.raises(reg.RegistryError), session_scope(registry) as s:
            reg.register_dataset(
                s, CUSTODIAN, "people", [reg.SourceFile("patients", files["patients"])], "national_id", **bad
            )


def test_person_table_must_be_unique_per_individual(registry, make_users, tmp_path):
    make_users()
    files = write_cohort(tmp_path / "src")
    with pytest.raises(reg.RegistryError, match="duplicate national_id"), session_scope(registry) as s:
        reg.register_dataset(
            s, CUSTODIAN, "labs-only", [reg.SourceFile("labs", files["labs"])], "national_id"
        )
    with session_scope(registry) as s:
        assert s.execute(select(func.count(Dataset.id))).scalar_one() == 0


def test_grant_always_pseudonymises_the_identifier(make_world):
    world = make_world(grant=None)
    with session_scope(world.settings) as s:
        g = reg.request_grant(
            s,
            LEAD,
            world.project,
            "diabetes:1",
            {"patients": ["national_id", "birth_date"], "labs": ["hba1c"]},
            pseudonymise=["patients.birth_date"],
            age_bands=True,
            date_shift_days=30,
            expires_at=future(30),
        )
        assert g.pseudonymise == {"patients": ["national_id", "birth_date"]}
        assert g.age_bands and g.date_shift_days == 30 and g.remove_opted_out


def test_expired_grant_or_project_cannot_be_approved(make_world):
    world = make_world(grant=None)
    with session_scope(world.settings) as s:
        grant_id = reg.request_grant(
            s, LEAD, world.project, "diabetes", {"labs": ["hba1c"]}, expires_at=future(30)
        ).id
    in_60_days = datetime.now(UTC) + timedelta(days=60)
    with pytest.raises(reg.RegistryError, match="expired"), session_scope(world.settings) as s:
        reg.decide_grant(s, CUSTODIAN, grant_id, approve=True, now=in_60_days)
    in_400_days = datetime.now(UTC) + timedelta(days=400)  # after the project's expiry too
    with pytest.raises(NotAllowed, match="expired"), session_scope(world.settings) as s:
        reg.decide_grant(s, CUSTODIAN, grant_id, approve=True, now=in_400_days)


def test_status_transitions(make_world):
    world = make_world()
    with session_scope(world.settings) as s:
        with pytest.raises(NotAllowed, match="only an administrator"):
            reg.change_project_status(s, LEAD, world.project, "suspend")  # oversight is not the lead's
        assert reg.change_project_status(s, ADMIN, world.project, "suspend").status == "suspended"
        with pytest.raises(reg.RegistryError, match="cannot be suspended"):
            reg.change_project_status(s, ADMIN, world.project, "suspend")
        assert reg.change_project_status(s, ADMIN, world.project, "close").status == "closed"
        with pytest.raises(reg.RegistryError, match="closed and cannot be resumed"):
            reg.change_project_status(s, ADMIN, world.project, "resume")
        with pytest.raises(NotAllowed):
            reg.change_project_status(s, RESEARCHER, world.project, "close")


def test_a_lead_closes_her_own_project(make_world):
    world = make_world()
    with session_scope(world.settings) as s:
        assert reg.change_project_status(s, LEAD, world.project, "close", "finished").status == "closed"


def test_admins_cannot_change_their_own_roles(registry, make_users):
    make_users()
    with session_scope(registry) as s:
        reg.set_user_role(s, ADMIN, CUSTODIAN, "admin")
        with pytest.raises(NotAllowed, match="themselves"):
            reg.set_user_role(s, CUSTODIAN, CUSTODIAN, "admin", on=False)
        reg.set_user_role(s, CUSTODIAN, ADMIN, "admin", on=False)
        assert not reg.get_user(s, ADMIN).is_admin


def test_lead_membership_created_with_project(make_world):
    world = make_world(grant=None)
    with session_scope(world.settings) as s:
        project = reg.get_project(s, world.project)
        assert isinstance(project, Project) and project.lead.username == LEAD
        assert {(m.user.username, m.role) for m in project.memberships} == {
            (LEAD, "lead"),
            (RESEARCHER, "researcher"),
            ("checker", "checker"),
        }
        assert audit.verify(s).ok


def test_readonly_session_is_not_blocked_by_a_writer(registry):
    import time

    with session_scope(registry) as writer:
        audit.record(writer, "alice", "user.add", "thing", "1")  # holds the SQLite write lock
        started = time.monotonic()
        with session_scope(registry, readonly=True) as reader:
            assert reader.execute(select(func.count(AuditEvent.id))).scalar_one() == 0
        assert time.monotonic() - started < 5
    with session_scope(registry, readonly=True) as reader:
        assert reader.execute(select(func.count(AuditEvent.id))).scalar_one() == 1


def test_a_read_only_session_ends_without_expiring_what_it_read(registry, make_users):
    make_users()
    with session_scope(registry, readonly=True) as s:
        admin = reg.get_user(s, ADMIN)
    # Closed, not rolled back: what it read stays readable (a rollback would have expired it and
    # this would raise DetachedInstanceError), and its snapshot is gone: the next reader sees news.
    assert admin.username == ADMIN and admin.is_admin
    with session_scope(registry) as s:
        reg.set_user_role(s, ADMIN, CUSTODIAN, "admin")
    with session_scope(registry, readonly=True) as s:
        assert reg.get_user(s, CUSTODIAN).is_admin


def test_catalog_coding_systems_and_versions(registry, make_users, tmp_path):
    from hub.registry.catalogue import catalog_jsonld

    make_users()
    tumours = tmp_path / "tumours.csv"
    tumours.write_text("person_id,icd_o3_topography,stage\n1,C50.9,II\n2,C18.7,III\n")
    with session_scope(registry) as s:
        reg.register_dataset(
            s,
            CUSTODIAN,
            "oncology",
            [reg.SourceFile("tumours", tumours)],
            "person_id",
            title="Oncology registry",
            coding={"stage": "TNM"},
        )
    tumours.write_text("person_id,icd_o3_topography,stage\n1,C50.9,II\n2,C18.7,III\n3,C61,I\n")
    with session_scope(registry) as s:
        reg.register_dataset(s, CUSTODIAN, "oncology", [reg.SourceFile("tumours", tumours)], "person_id")
        doc = catalog_jsonld(s, "https://tre.example/")
    [node] = doc["dcat:dataset"]
    assert node["@id"] == "https://tre.example/dataset/oncology/2"  # latest version only
    assert node["healthdcatap:numberOfUniqueIndividuals"]["@value"] == "3"
    assert node["dct:title"] == "Oncology registry"  # carried over from version 1
    # The custodian's TNM label carried over to version 2 (unknown systems are named, not dropped).
    assert node["healthdcatap:hasCodingSystem"] == [{"@id": "https://www.wikidata.org/entity/P563"}, "TNM"]
    assert "healthdcatap:minTypicalAge" not in node  # no birth date column


def test_readding_without_labels_keeps_them_and_creates_no_version(registry, make_users, tmp_path):
    make_users()
    files = write_cohort(tmp_path / "src")
    tables = [reg.SourceFile("patients", files["patients"])]
    with session_scope(registry) as s:
        reg.register_dataset(s, CUSTODIAN, "people", tables, "national_id", sensitivity={"sex": "sensitive"})
    with session_scope(registry) as s:
        ds, created = reg.register_dataset(s, CUSTODIAN, "people", tables, "national_id")
        assert not created and ds.version == 1
        ds, created = reg.register_dataset(
            s, CUSTODIAN, "people", tables, "national_id", sensitivity={"sex": "other"}
        )
        assert created and ds.version == 2  # relabelling is a change worth a version


def test_csv_identifiers_are_text_so_leading_zeros_count(registry, make_users, tmp_path):
    make_users()
    people = tmp_path / "people.csv"
    people.write_text("national_id,age\n0123456789,40\n123456789,50\n")
    with session_scope(registry) as s:
        ds, _ = reg.register_dataset(
            s, CUSTODIAN, "people", [reg.SourceFile("people", people)], "national_id"
        )
        types = {c["name"]: c["type"] for c in ds.tables[0]["columns"]}
    assert types == {"national_id": "VARCHAR", "age": "BIGINT"}
    assert ds.unique_individuals == 2  # as numbers they would have been one duplicated person


def test_registry_database_is_private_from_the_start(tmp_path):
    """Created by whichever `tre` command runs first, the registry must not be world-readable."""
    import stat

    from sqlalchemy import text

    from hub.kernel.db import make_engine

    db = tmp_path / "state" / "tre.sqlite"
    engine = make_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
        wal = db.with_name(db.name + "-wal")
        assert wal.exists()
        assert stat.S_IMODE(wal.stat().st_mode) & 0o077 == 0
    engine.dispose()
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_names_cannot_make_container_names_or_origins_ambiguous():
    """`tre-<user>--<project>` must name one workspace, and no user may take a service's origin
    (JupyterHub serves service X at X--service.<domain>): no slug holds "--"."""
    from hub.registry.vocabulary import is_slug
    from hub.workspaces.spawner import SAFE_NAME

    # (user "ann", project "b--c") and (user "ann--b", project "c") would both be tre-ann--b--c
    for name in ("ann--b", "b--c", "egress--service", "portal--service"):
        assert not is_slug(name) and not SAFE_NAME.match(name)
    for name in ("ann", "diabetes-outcomes", "a-b-c"):
        assert is_slug(name) and SAFE_NAME.match(name)


def test_health_categories_are_the_custodians_and_part_of_a_version(registry, make_users, tmp_path):
    make_users()
    files = write_cohort(tmp_path / "src")
    tables = [reg.SourceFile("patients", files["patients"])]
    with session_scope(registry) as s:
        ds, _ = reg.register_dataset(s, CUSTODIAN, "people", tables, "national_id")
        assert ds.health_categories == ["EHRS"]  # the default: data from electronic health records
    with session_scope(registry) as s:
        ds, created = reg.register_dataset(s, CUSTODIAN, "people", tables, "national_id")
        assert not created and ds.health_categories == ["EHRS"]
        ds, created = reg.register_dataset(
            s, CUSTODIAN, "people", tables, "national_id", health_categories=["HRAD", "EHRS", "HRAD"]
        )
        assert created and ds.version == 2 and ds.health_categories == ["EHRS", "HRAD"]
    with session_scope(registry) as s:  # the next version keeps them unless told otherwise
        ds, created = reg.register_dataset(s, CUSTODIAN, "people", tables, "national_id")
        assert not created and ds.health_categories == ["EHRS", "HRAD"]


def test_an_unknown_health_category_is_refused_and_nothing_is_registered(registry, make_users, tmp_path):
    make_users()
    files = write_cohort(tmp_path / "src")
    with (
        pytest.raises(reg.RegistryError, match=r"unknown health category EHR\b.*EHRS"),
        session_scope(registry) as s,
    ):
        reg.register_dataset(
            s, CUSTODIAN, "people", [reg.SourceFile("patients", files["patients"])], "national_id",
            health_categories=["EHR"],
        )  # fmt: skip
    with session_scope(registry, readonly=True) as s:
        assert s.execute(select(func.count(Dataset.id))).scalar_one() == 0
