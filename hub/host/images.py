"""Build the notebook image without an image registry.

Air-gapped sites are normal for a TRE, so nothing here assumes `docker pull` works:

1. base: a slim Python image if one is present locally (or can be pulled quickly), otherwise a
   Debian bookworm root filesystem made with debootstrap and `docker import`-ed, cached by the
   hash of its recipe (as an image tag, and as a tarball under images/build/base/);
2. wheel house: every Python package is downloaded on the host, as wheels for the image's Python
   and platform, into images/build/wheelhouse (the tre_notebook wheel is built there too);
3. `docker build --network none` on top of the base, installing only from the wheel house.

The image is labelled with the hash of everything that goes into it; a rebuild whose hash matches
the existing image's label is skipped. Packages the host has are pinned to the host's versions
(the catalogue is written by the host's duckdb, the single-user server must match the hub).

The recipe (the repository's `images/` folder: `notebook/` and `tre_notebook/`) travels with the
package as `hub/host/recipe`, so an installed TRE builds the same image as a checkout; what a build
downloads and makes goes to `settings.image_cache`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hub.kernel.hashing import file_sha256
from hub.kernel.settings import Settings

# In a checkout a link to the repository's images/ folder; in an installed package, its copy.
RECIPE_DIR = Path(__file__).resolve().parent / "recipe"
NOTEBOOK_DIR = RECIPE_DIR / "notebook"
PACKAGE_DIR = RECIPE_DIR / "tre_notebook"

SLIM_BASE = "python:3.11-slim-bookworm"
# Debian bookworm's python3 and glibc: the wheel house is downloaded for these, not for the host.
IMAGE_PYTHON = "3.11"
IMAGE_GLIBC = (2, 36)
# The image must carry exactly the host's version of these (see module docstring).
MUST_MATCH_HOST = ("jupyterhub", "duckdb")

LABEL_VERSION = "org.opencontainers.image.version"
LABEL_RECIPE = "tre.recipe-hash"
LABEL_BASE = "tre.base"
LABEL_DUCKDB = "tre.duckdb-version"
LABEL_JUPYTERHUB = "tre.jupyterhub-version"


class ImageBuildError(RuntimeError):
    """A build step failed; the message says what to do next."""


@dataclass(frozen=True)
class BaseRecipe:
    """Everything that determines the debootstrap root filesystem (the mirror does not)."""

    suite: str = "bookworm"
    variant: str = "minbase"
    packages: tuple[str, ...] = ("python3", "python3-venv", "ca-certificates", "tini")
    # Removed before import: documentation, translations, apt's package lists and downloads.
    prune: tuple[str, ...] = (
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
        "var/lib/apt/lists",
        "var/cache/apt",
        "var/log",
    )
    revision: int = 1  # bump when the steps in build_rootfs change

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def tag(self) -> str:
        return f"tre-base:{self.suite}-{self.digest()}"


class BuildReporter:
    """Plain progress output (tests, logs); the CLI passes a Rich one with the same methods."""

    def step(self, title: str) -> None:
        print(f"==> {title}", flush=True)

    def detail(self, line: str) -> None:
        """One line of a tool's output (debootstrap, pip, docker build)."""

    def note(self, message: str) -> None:
        print(f"    {message}", flush=True)


@dataclass
class BuildResult:
    image: str
    tags: list[str]
    recipe_hash: str
    base: str
    cached: bool
    seconds: float
    labels: dict[str, str] = field(default_factory=dict)


# --- pure parts: requirements and recipe hashing -------------------------------------------------


def _requirement_name(spec: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    if not match:
        raise ImageBuildError(f"cannot read the package name in requirement {spec!r}")
    return match.group(1)


def read_requirements(path: Path = NOTEBOOK_DIR / "requirements.in") -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def host_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def pin_requirements(
    specs: Sequence[str], installed: Callable[[str], str | None] = host_version
) -> list[str]:
    """Each spec becomes `name==<host version>` where the host has the package, else stays."""
    pinned = []
    for spec in specs:
        name = _requirement_name(spec)
        version = installed(name)
        pinned.append(f"{name}=={version}" if version else spec)
    for name in MUST_MATCH_HOST:
        if not installed(name):
            raise ImageBuildError(
                f"{name} is not installed on the host: the image must carry the host's exact version "
                "(run `make venv`)"
            )
    return pinned


def _skipped(part: str) -> bool:
    return part in {"__pycache__", "build", "dist"} or part.endswith(".egg-info") or part.startswith(".")


def tree_hashes(root: Path, prefix: str) -> dict[str, str]:
    """sha256 of every source file under root (caches and build output left out), by relative path."""
    hashes = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not any(_skipped(part) for part in rel.parts) and path.suffix != ".pyc":
            hashes[f"{prefix}/{rel.as_posix()}"] = file_sha256(path)
    return hashes


def recipe_hash(base: str, requirements: Sequence[str], files: Mapping[str, str]) -> str:
    """One hash over what goes into the image: base identity, pinned requirements, source files."""
    doc = {
        "base": base,
        "python": IMAGE_PYTHON,
        "glibc": IMAGE_GLIBC,
        "requirements": sorted(requirements),
        "files": dict(sorted(files.items())),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def image_tags(image: str, version: str) -> list[str]:
    """`repo:<version>`, `repo:latest`, and the configured tag when it is neither."""
    repo, _, tag = image.rpartition(":")
    if not repo or "/" in tag:  # no tag given (a ':' belonged to a registry port)
        repo, tag = image, "latest"
    tags = [f"{repo}:{version}", f"{repo}:latest"]
    if f"{repo}:{tag}" not in tags:
        tags.append(f"{repo}:{tag}")
    return tags


def wheel_platforms(machine: str | None = None) -> list[str]:
    """manylinux tags the image's glibc accepts (pip does not widen an explicit --platform)."""
    arch = machine or platform.machine()
    major, minor = IMAGE_GLIBC
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 16, -1)]
    return [*tags, f"manylinux2014_{arch}"]


def tre_version() -> str:
    return host_version("tre") or "0.0.0"


# --- docker and subprocess helpers ---------------------------------------------------------------


def docker(*args: str, timeout: float | None = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


def docker_available() -> bool:
    try:
        # generous: a busy engine (several builds and spawns at once) can take 10+ s to answer
        return docker("info", "--format", "{{.ServerVersion}}", timeout=90).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def image_inspect(ref: str) -> dict | None:
    """`docker image inspect` of ref, or None when there is no such image."""
    result = docker("image", "inspect", ref)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)[0]


def image_labels(ref: str) -> dict[str, str] | None:
    info = image_inspect(ref)
    if info is None:
        return None
    return dict(info.get("Config", {}).get("Labels") or {})


def _stream(
    cmd: Sequence[str], reporter: BuildReporter, what: str, env: Mapping[str, str] | None = None
) -> None:
    """Run cmd, passing each output line to the reporter; on failure show its last lines."""
    tail: deque[str] = deque(maxlen=25)
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
    except OSError as exc:
        raise ImageBuildError(f"{what}: cannot run {cmd[0]} ({exc})") from exc
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.rstrip()
        if line:
            tail.append(line)
            reporter.detail(line)
    if proc.wait() != 0:
        shown = "\n".join(tail)
        raise ImageBuildError(f"{what} failed (exit {proc.returncode}); last output:\n{shown}")


# --- the base image ------------------------------------------------------------------------------


def try_pull(ref: str, timeout: float) -> bool:
    """Pull ref within timeout; False (quickly) where there is no registry."""
    try:
        return docker("pull", "-q", ref, timeout=timeout).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _unmount_below(path: Path) -> None:
    prefix = str(path.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)


def build_rootfs(recipe: BaseRecipe, reporter: BuildReporter, mirror: str, cache: Path) -> Path:
    """debootstrap the recipe into a tarball under <cache>/base/ (cached by recipe hash)."""
    base_dir = cache / "base"
    tarball = base_dir / f"{recipe.digest()}.tar"
    if tarball.exists():
        reporter.note(f"root filesystem cached: {tarball}")
        return tarball
    if os.geteuid() != 0:
        raise ImageBuildError(
            "debootstrap needs root: run `sudo tre images build`, or `docker load` a "
            f"{SLIM_BASE} image and build again"
        )
    if not shutil.which("debootstrap"):
        raise ImageBuildError(
            "debootstrap is not installed: `apt-get install debootstrap` (or run .ci/setup-host.sh)"
        )
    rootfs = base_dir / f"{recipe.digest()}.rootfs"
    debs = base_dir / "debs"  # keeps downloaded .deb files between recipe changes
    _unmount_below(rootfs)  # an interrupted debootstrap leaves /proc mounted in there
    shutil.rmtree(rootfs, ignore_errors=True)
    debs.mkdir(parents=True, exist_ok=True)
    cmd = [
        "debootstrap",
        f"--variant={recipe.variant}",
        f"--include={','.join(recipe.packages)}",
        f"--cache-dir={debs}",
        recipe.suite,
        str(rootfs),
        mirror,
    ]
    _stream(cmd, reporter, "debootstrap")
    for rel in recipe.prune:
        target = rootfs / rel
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    partial = tarball.with_suffix(".tar.partial")
    _stream(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."], reporter, "tar")
    partial.rename(tarball)
    shutil.rmtree(rootfs)
    return tarball


def ensure_debootstrap_base(recipe: BaseRecipe, reporter: BuildReporter, mirror: str, cache: Path) -> str:
    if image_inspect(recipe.tag) is not None:
        reporter.note(f"base image cached: {recipe.tag}")
        return recipe.tag
    tarball = build_rootfs(recipe, reporter, mirror, cache)
    reporter.note(f"importing {tarball.name} as {recipe.tag}")
    _stream(
        [
            "docker",
            "import",
            "--change",
            "ENV LANG=C.UTF-8",
            "--change",
            'CMD ["/bin/sh"]',
            str(tarball),
            recipe.tag,
        ],
        reporter,
        "docker import",
    )
    return recipe.tag


# --- the wheel house and the build context -------------------------------------------------------


def pip_env() -> dict[str, str]:
    # The host's own constraint file (if any) is about the host, not the image.
    return {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_CONSTRAINT": ""}


def build_wheelhouse(requirements: Sequence[str], reporter: BuildReporter, cache: Path) -> Path:
    """Download wheels for the image's Python/platform, plus a tre_notebook wheel, into a fresh dir."""
    wheelhouse = cache / "wheelhouse"
    fresh = cache / "wheelhouse.partial"
    source = cache / "tre_notebook-source"  # the recipe may sit in a read-only installed package
    for stale in (fresh, source):
        shutil.rmtree(stale, ignore_errors=True)
    fresh.mkdir(parents=True)
    shutil.copytree(PACKAGE_DIR, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    pip = [sys.executable, "-m", "pip"]
    _stream(
        [*pip, "wheel", "--no-deps", "-w", str(fresh), str(source)],
        reporter,
        "tre_notebook wheel",
        pip_env(),
    )
    shutil.rmtree(source, ignore_errors=True)
    reqs = fresh / "requirements.txt"
    reqs.write_text("\n".join(requirements) + "\n")
    platforms = [arg for tag in wheel_platforms() for arg in ("--platform", tag)]
    _stream(
        [
            *pip,
            "download",
            "--dest",
            str(fresh),
            "--only-binary=:all:",
            *platforms,
            "--python-version",
            IMAGE_PYTHON,
            "--implementation",
            "cp",
            "--abi",
            f"cp{IMAGE_PYTHON.replace('.', '')}",
            "--progress-bar",
            "off",
            "-r",
            str(reqs),
        ],
        reporter,
        "pip download (wheel house)",
        pip_env(),
    )
    reqs.unlink()
    shutil.rmtree(wheelhouse, ignore_errors=True)
    fresh.rename(wheelhouse)
    return wheelhouse


def make_context(wheelhouse: Path, requirements: Sequence[str], cache: Path) -> Path:
    """<cache>/context: the Dockerfile and its files, the wheels (hard links), the pins.

    The tre_notebook wheel goes in its own folder: it changes far more often than the rest, and
    keeping it out of the wheel house lets Docker's cache keep the third-party install layer.
    """
    context = cache / "context"
    shutil.rmtree(context, ignore_errors=True)
    shutil.copytree(NOTEBOOK_DIR, context, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for folder in ("wheelhouse", "tre_notebook"):
        (context / folder).mkdir()
    for wheel in wheelhouse.glob("*.whl"):
        target = (
            context
            / ("tre_notebook" if wheel.name.startswith("tre_notebook-") else "wheelhouse")
            / wheel.name
        )
        try:
            os.link(wheel, target)
        except OSError:
            shutil.copy2(wheel, target)
    if not any((context / "tre_notebook").iterdir()):
        raise ImageBuildError(f"no tre_notebook wheel in {wheelhouse}")
    (context / "requirements.txt").write_text("\n".join(requirements) + "\n")
    return context


# --- the whole build -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What a build would produce, worked out without building anything."""

    requirements: list[str]
    base: str
    recipe_hash: str
    tags: list[str]
    labels: dict[str, str]


def recipe_files() -> dict[str, str]:
    """sha256 of every file the image is built from, by its place in the recipe."""
    if not NOTEBOOK_DIR.is_dir() or not PACKAGE_DIR.is_dir():
        raise ImageBuildError(
            f"the image recipe is missing from {RECIPE_DIR}; reinstall the TRE package (it carries images/)"
        )
    return {**tree_hashes(NOTEBOOK_DIR, "notebook"), **tree_hashes(PACKAGE_DIR, "tre_notebook")}


def plan(settings: Settings, base: str, base_identity: str) -> Plan:
    requirements = pin_requirements(read_requirements())
    files = recipe_files()
    digest = recipe_hash(base_identity, requirements, files)
    version = tre_version()
    labels = {
        LABEL_VERSION: version,
        "org.opencontainers.image.title": "tre-notebook",
        "org.opencontainers.image.description": "TRE workspace: JupyterLab, DuckDB, pandas, polars",
        LABEL_RECIPE: digest,
        LABEL_BASE: base,
        LABEL_DUCKDB: host_version("duckdb") or "",
        LABEL_JUPYTERHUB: host_version("jupyterhub") or "",
    }
    return Plan(requirements, base, digest, image_tags(settings.image, version), labels)


def _base_identity(ref: str) -> str:
    """The base's name and image ID: a re-made or re-pulled base means a new notebook image."""
    info = image_inspect(ref)
    return f"{ref}@{info['Id']}" if info else ref


@contextlib.contextmanager
def _timed(reporter: BuildReporter, title: str) -> Iterator[None]:
    reporter.step(title)
    start = time.monotonic()
    yield
    reporter.note(f"{title}: {time.monotonic() - start:.1f}s")


@contextlib.contextmanager
def _build_lock(reporter: BuildReporter, cache: Path) -> Iterator[None]:
    """One build at a time per cache (a CLI build and a test session may race otherwise)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "build.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            reporter.note("another image build is running: waiting for it to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def build_image(
    settings: Settings,
    *,
    force: bool = False,
    base: str = "auto",
    reporter: BuildReporter | None = None,
    mirror: str | None = None,
    pull_timeout: float = 15.0,
) -> BuildResult:
    """Build (or find up to date) the notebook image; see the module docstring for the steps.

    base: "auto" (slim image if present or pullable, else debootstrap), "debootstrap", or an
    image reference that is present locally.
    """
    reporter = reporter or BuildReporter()
    mirror = mirror or settings.debian_mirror
    start = time.monotonic()
    if not docker_available():
        raise ImageBuildError(
            "the Docker engine is not reachable: start it (e.g. .ci/setup-host.sh), then retry"
        )
    with _build_lock(reporter, settings.image_cache):
        return _build(settings, force, base, reporter, mirror, pull_timeout, start)


def _build(
    settings: Settings,
    force: bool,
    base: str,
    reporter: BuildReporter,
    mirror: str,
    pull_timeout: float,
    start: float,
) -> BuildResult:
    recipe = BaseRecipe()
    reporter.step("Checking the recipe")
    if base == "debootstrap":
        base_ref = recipe.tag
    elif base != "auto":
        if image_inspect(base) is None:
            raise ImageBuildError(f"base image {base} is not present locally: `docker load` it first")
        base_ref = base
    elif image_inspect(SLIM_BASE) is not None:
        base_ref = SLIM_BASE
    else:
        base_ref = recipe.tag
    p = plan(settings, base_ref, _base_identity(base_ref))
    if not force and (image_labels(p.tags[0]) or {}).get(LABEL_RECIPE) == p.recipe_hash:
        for tag in p.tags[1:]:
            if (image_labels(tag) or {}).get(LABEL_RECIPE) != p.recipe_hash:
                docker("tag", p.tags[0], tag)
        reporter.note(f"{', '.join(p.tags)} up to date (recipe {p.recipe_hash})")
        return BuildResult(
            p.tags[0], p.tags, p.recipe_hash, base_ref, True, time.monotonic() - start, p.labels
        )

    if base == "auto" and base_ref != SLIM_BASE:
        with _timed(reporter, f"Trying to pull {SLIM_BASE} ({pull_timeout:.0f}s at most)"):
            pulled = try_pull(SLIM_BASE, pull_timeout)
            reporter.note("pulled" if pulled else "no registry reachable: building the base with debootstrap")
        if pulled:
            base_ref = SLIM_BASE
    if base_ref == recipe.tag:
        with _timed(reporter, f"Base image {recipe.tag} (debootstrap {recipe.suite} {recipe.variant})"):
            ensure_debootstrap_base(recipe, reporter, mirror, settings.image_cache)
    p = plan(settings, base_ref, _base_identity(base_ref))  # now with the base's image ID

    with _timed(reporter, "Wheel house (pip download on the host)"):
        wheelhouse = build_wheelhouse(p.requirements, reporter, settings.image_cache)
        reporter.note(f"{len(list(wheelhouse.glob('*.whl')))} wheels in {wheelhouse}")
    context = make_context(wheelhouse, p.requirements, settings.image_cache)

    previous = image_inspect(p.tags[0])
    with _timed(reporter, f"docker build --network none → {', '.join(p.tags)}"):
        cmd = [
            "docker",
            "build",
            "--network",
            "none",
            "--rm",
            "--force-rm",
            "--build-arg",
            f"BASE={base_ref}",
        ]
        for key, value in p.labels.items():
            cmd += ["--label", f"{key}={value}"]
        for tag in p.tags:
            cmd += ["-t", tag]
        _stream([*cmd, str(context)], reporter, "docker build", {"DOCKER_BUILDKIT": "0"})
    shutil.rmtree(context, ignore_errors=True)
    if previous:
        _remove_if_untagged(previous["Id"], reporter)
    return BuildResult(p.tags[0], p.tags, p.recipe_hash, base_ref, False, time.monotonic() - start, p.labels)


def _remove_if_untagged(image_id: str, reporter: BuildReporter) -> None:
    """Drop the image this build replaced, unless something still tags or runs it (~1.4 GB each)."""
    info = image_inspect(image_id)
    if info and not info.get("RepoTags") and docker("image", "rm", image_id).returncode == 0:
        reporter.note(f"removed the replaced image {image_id[7:19]}")


def list_images(settings: Settings) -> list[dict[str, str]]:
    """Local notebook and base images with their TRE labels, newest first."""
    repo = image_tags(settings.image, "x")[1].rpartition(":")[0]
    rows = []
    for reference in (repo, "tre-base"):
        result = docker("image", "ls", "--filter", f"reference={reference}", "--format", "{{json .}}")
        if result.returncode != 0:
            raise ImageBuildError(f"docker image ls failed: {result.stderr.strip()}")
        for line in result.stdout.splitlines():
            row = json.loads(line)
            ref = f"{row['Repository']}:{row['Tag']}"
            labels = image_labels(ref) or {}
            rows.append(
                {
                    "image": ref,
                    "id": row["ID"],
                    "created": row["CreatedSince"],
                    "size": row["Size"],
                    "version": labels.get(LABEL_VERSION, ""),
                    "recipe": labels.get(LABEL_RECIPE, ""),
                    "duckdb": labels.get(LABEL_DUCKDB, ""),
                    "jupyterhub": labels.get(LABEL_JUPYTERHUB, ""),
                }
            )
    return rows
