"""The demo TRE: one call builds everything `make demo` needs, another runs the hub over it.

`prepare(settings, ...)` is idempotent: each step checks what already exists and does only what is
missing, so a second run takes seconds. It builds the notebook image, writes the synthetic data,
registers the cast, the datasets and two projects with different grants, creates hub logins
(passwords + TOTP, kept 0600 in the state folder so a second run prints the same ones), provisions
both projects and sets up the workspace network. `hub.workspaces.hub_process.HubProcess` then runs
`tre hub` (proxy, hub, egress service, idle culler) and stops all of it, workspaces included.

The end-to-end test (tests/e2e) calls the same functions with a small cohort in a temporary root.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from hub import registry as reg
from hub.demo.data import generate
from hub.host import tls
from hub.host.images import BuildReporter, ImageBuildError, build_image
from hub.host.network import NetworkError, setup, teardown
from hub.kernel.db import session_scope, upgrade
from hub.kernel.settings import Settings
from hub.provisioning import ProvisioningError, provision_project, read_manifest
from hub.registry.access import active_grants
from hub.registry.models import Dataset
from hub.workspaces.hub_process import remove_workspaces
from hub.workspaces.login import create_login, totp_uri

ACCOUNTS_FILE = "demo-accounts.json"
DATA_DIR = "sources"

ADMIN = "admin"
LEAD = "lead"
RESEARCHER = "ada"  # diabetes-only project
OTHER_RESEARCHER = "raj"  # linked diabetes + oncology project
CHECKERS = ("cara", "chen")
DIABETES_PROJECT = "diabetes-outcomes"
LINKED_PROJECT = "diabetes-cancer"

# username -> (display name, what they do in the demo)
CAST: dict[str, tuple[str, str]] = {
    ADMIN: ("Alex Admin", "administrator and data custodian"),
    LEAD: ("Lee Lead", f"project lead of {DIABETES_PROJECT} and {LINKED_PROJECT}"),
    RESEARCHER: ("Ada Researcher", f"researcher on {DIABETES_PROJECT}"),
    OTHER_RESEARCHER: ("Raj Researcher", f"researcher on {LINKED_PROJECT}"),
    CHECKERS[0]: ("Cara Checker", "output checker on both projects"),
    CHECKERS[1]: ("Chen Checker", "output checker on both projects"),
}

DIABETES_TABLES = ("patients", "hba1c", "prescriptions", "complications")
ONCOLOGY_TABLES = ("patients", "tumours", "treatments")
DATASET_TITLES = {
    "diabetes": "National diabetes audit (synthetic)",
    "oncology": "Cancer registry (synthetic)",
    "optout": "National data opt-out",
}
# project -> (title, purpose, members, {dataset: (columns, grant options)})
PROJECTS: dict[str, tuple[str, str, str, dict[str, tuple[dict[str, list[str]], dict]]]] = {
    DIABETES_PROJECT: (
        "Glycaemic control and complications in diabetes",
        "How HbA1c trajectories relate to retinopathy, neuropathy and nephropathy.",
        RESEARCHER,
        {
            # Pseudonymised identifiers (always), opted-out patients removed, birth dates as age bands.
            "diabetes": ({t: ["*"] for t in DIABETES_TABLES}, {"remove_opted_out": True, "age_bands": True}),
        },
    ),
    LINKED_PROJECT: (
        "Diabetes and cancer incidence (linked registries)",
        "Cancer incidence and stage at diagnosis in people with diabetes, by diabetes type.",
        OTHER_RESEARCHER,
        {
            "diabetes": (
                {
                    "patients": ["nhs_number", "sex", "diabetes_type", "diagnosis_date"],
                    "hba1c": ["*"],
                },
                {"remove_opted_out": True},
            ),
            "oncology": ({t: ["*"] for t in ONCOLOGY_TABLES}, {"remove_opted_out": True}),
        },
    ),
}


class DemoError(RuntimeError):
    """The demo cannot go on; the message says what to do."""


class DemoProgress:
    """Plain progress lines (tests, logs); the CLI passes a Rich one with the same methods."""

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        print(f"==> {title}", flush=True)
        started = time.monotonic()
        yield
        print(f"    done in {time.monotonic() - started:.1f}s", flush=True)

    def note(self, message: str) -> None:
        print(f"    {message}", flush=True)

    def image_reporter(self) -> BuildReporter:
        return BuildReporter()


@dataclass(frozen=True)
class Account:
    username: str
    display_name: str
    role: str
    password: str
    totp_secret: str

    def totp_uri(self) -> str:
        return totp_uri(self.username, self.totp_secret, issuer="TRE demo")


# --- steps ------------------------------------------------------------------------------------------


def ensure_image(settings: Settings, progress: DemoProgress) -> None:
    try:
        result = build_image(settings, reporter=progress.image_reporter())
    except ImageBuildError as exc:
        raise DemoError(f"notebook image build failed: {exc}") from exc
    progress.note(f"{result.image} {'up to date' if result.cached else 'built'}")


def ensure_data(settings: Settings, patients: int, seed: int, progress: DemoProgress) -> Path:
    """Synthetic data under <root>/sources, regenerated only when missing or of another size."""
    out = settings.root / DATA_DIR
    meta_file = out / "demo_data.json"
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        if (meta.get("patients"), meta.get("seed")) == (patients, seed):
            progress.note(f"{patients:,} patients already generated in {out}")
            return out
        if _registry_has_datasets(settings):
            raise DemoError(
                f"the demo in {settings.root} was built with {meta.get('patients'):,} patients (seed "
                f"{meta.get('seed')}); run again with those, or with --reset to start over"
            )
    result = generate(out, patients=patients, seed=seed)
    progress.note(f"{result.total_rows:,} rows for {patients:,} patients in {out}")
    return out


def _registry_has_datasets(settings: Settings) -> bool:
    upgrade(settings)
    with session_scope(settings, readonly=True) as s:
        return s.execute(select(func.count(Dataset.id))).scalar_one() > 0


def ensure_registry(settings: Settings, data_dir: Path, progress: DemoProgress) -> None:
    """Users, datasets, projects, members, checkers and approved grants: whatever is missing."""
    upgrade(settings)
    tables = {"diabetes": DIABETES_TABLES, "oncology": ONCOLOGY_TABLES, "optout": ("optout",)}
    created: list[str] = []
    with session_scope(settings) as s:
        if reg.find_user(s, ADMIN) is None:  # the bootstrap user: admin and data custodian
            reg.add_user(s, ADMIN, ADMIN, CAST[ADMIN][0], is_admin=True, is_custodian=True)
            created.append(ADMIN)
        for name, (display, _) in CAST.items():
            if reg.find_user(s, name) is None:
                reg.add_user(s, ADMIN, name, display)
                created.append(name)
        for dataset, names in tables.items():
            _, new = reg.register_dataset(
                s,
                ADMIN,
                dataset,
                [reg.SourceFile(t, data_dir / dataset / f"{t}.parquet") for t in names],
                "nhs_number",
                kind="optout" if dataset == "optout" else "cohort",
                title=DATASET_TITLES[dataset],
            )
            if new:
                created.append(f"dataset {dataset}")
        expires = datetime.now(UTC) + timedelta(days=365)
        for slug, (title, purpose, researcher, grants) in PROJECTS.items():
            try:
                project = reg.get_project(s, slug)
            except reg.RegistryError:
                project = reg.create_project(s, ADMIN, slug, title, LEAD, expires, purpose=purpose)
                reg.add_member(s, LEAD, slug, researcher)
                for checker in CHECKERS:
                    reg.add_member(s, ADMIN, slug, checker, role="checker")
                created.append(f"project {slug}")
            granted = {g.dataset.name for g in active_grants(s, project)}
            for dataset, (columns, options) in grants.items():
                if dataset in granted:
                    continue
                grant = reg.request_grant(s, LEAD, slug, dataset, columns, **options)
                reg.decide_grant(s, ADMIN, grant.id, approve=True, note="demo")
                created.append(f"grant {dataset} → {slug}")
    progress.note("created " + ", ".join(created) if created else "registry already complete")


def ensure_logins(settings: Settings, progress: DemoProgress) -> list[Account]:
    """Hub logins for the cast, made once and kept (0600) so later runs print the same credentials."""
    path = settings.state_dir / ACCOUNTS_FILE
    known: dict[str, Account] = {}
    if path.is_file():
        known = {a["username"]: Account(**a) for a in json.loads(path.read_text())}
    accounts = []
    logging.disable(logging.INFO)  # the hub database's migrations log at INFO: not news here
    try:
        for name, (display, role) in CAST.items():
            account = known.get(name)
            if account is None:
                password = secrets.token_urlsafe(12)
                account = Account(name, display, role, password, create_login(name, password, settings))
            accounts.append(account)
    finally:
        logging.disable(logging.NOTSET)
    if [a.username for a in accounts] != list(known):
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump([asdict(a) for a in accounts], fh, indent=2)
        os.replace(tmp, path)
        progress.note(f"logins saved to {path} (0600)")
    else:
        progress.note(f"logins reused from {path}")
    return accounts


def ensure_provisioned(settings: Settings, progress: DemoProgress) -> None:
    """Provision each project unless its current release already holds exactly its active grants."""
    for slug in PROJECTS:
        with session_scope(settings, readonly=True) as s:
            wanted = sorted(g.id for g in active_grants(s, reg.get_project(s, slug)))
        manifest = read_manifest(settings.project_dir(slug))
        if manifest and sorted(g["id"] for g in manifest.get("grants", [])) == wanted:
            progress.note(f"{slug}: release {manifest['release']} is current")
            continue
        try:
            result = provision_project(settings, slug, ADMIN)
        except ProvisioningError as exc:
            raise DemoError(f"provisioning {slug} failed: {exc}") from exc
        progress.note(f"{slug}: release {result.release}, {result.rows_out:,} rows ({result.seconds:.1f}s)")


def ensure_certificate(settings: Settings, progress: DemoProgress) -> None:
    """The demo's TLS: a local CA and a certificate for its domain and every origin below it."""
    try:
        ca = tls.local_certificate(settings)
    except tls.TLSError as exc:
        raise DemoError(str(exc)) from exc
    found = tls.facts(settings)
    progress.note(f"{', '.join(found.names)} until {found.not_after:%Y-%m-%d}; trust {ca} to avoid warnings")


def ensure_network(settings: Settings, progress: DemoProgress) -> None:
    try:
        done = setup(settings)
    except NetworkError as exc:
        raise DemoError(str(exc)) from exc
    progress.note(f"{settings.network} on {settings.bridge} ({settings.subnet}), {len(done)} checks ok")


def prepare(
    settings: Settings, patients: int = 100_000, seed: int = 0, progress: DemoProgress | None = None
) -> list[Account]:
    """Everything before the hub starts; returns the accounts to print."""
    progress = progress or DemoProgress()
    settings.root.mkdir(parents=True, exist_ok=True)
    with progress.step("Notebook image"):
        ensure_image(settings, progress)
    with progress.step(f"Synthetic diabetes and oncology data ({patients:,} patients)"):
        data_dir = ensure_data(settings, patients, seed, progress)
    with progress.step("Registry: users, datasets, projects, grants, checkers"):
        ensure_registry(settings, data_dir, progress)
    with progress.step("Hub logins (password + TOTP)"):
        accounts = ensure_logins(settings, progress)
    with progress.step("Provisioning project data"):
        ensure_provisioned(settings, progress)
    with progress.step("TLS certificate (a local CA for the demo's names)"):
        ensure_certificate(settings, progress)
    with progress.step("Workspace network and firewall"):
        ensure_network(settings, progress)
    return accounts


def reset(settings: Settings) -> None:
    """Forget the demo: its root folder and its workspace network (the image stays)."""
    remove_workspaces(settings)
    with contextlib.suppress(NetworkError):
        teardown(settings)
    shutil.rmtree(settings.root, ignore_errors=True)
