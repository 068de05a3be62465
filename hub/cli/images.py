"""`tre images`: build and list the notebook image (no image registry needed)."""

from __future__ import annotations

import time

import typer

from hub.cli._common import console, fail, print_json
from hub.cli._registry import cli_settings

app = typer.Typer(
    help="The notebook image: build it without a registry, list what is built.", no_args_is_help=True
)


class RichReporter:
    """Step titles as lines, tool output as a live status line under a spinner."""

    def __init__(self) -> None:
        self._status = console.status("", spinner="dots")
        self._title = ""
        self._started = time.monotonic()

    def step(self, title: str) -> None:
        self._title = title
        self._started = time.monotonic()
        console.print(f"[bold cyan]▶[/] {title}", highlight=False)
        self._status.update(f"[dim]{title}[/]")
        self._status.start()

    def detail(self, line: str) -> None:
        elapsed = time.monotonic() - self._started
        self._status.update(f"[dim]{self._title} ({elapsed:.0f}s):[/] {line[:100]}")

    def note(self, message: str) -> None:
        self._status.stop()
        console.print(f"  [green]✓[/] {message}", highlight=False)

    def close(self) -> None:
        self._status.stop()


@app.command()
def build(
    force: bool = typer.Option(False, "--force", help="Rebuild even when the image is up to date."),
    base: str = typer.Option(
        "auto",
        help="auto (slim Python image if present or pullable, else debootstrap), debootstrap, or an image",
    ),
    mirror: str = typer.Option(
        None, help="Debian mirror for debootstrap (default TRE_DEBIAN_MIRROR or deb.debian.org)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show the recipe and what would be built; change nothing, need no Docker."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Build tre-notebook:<version> and :latest from a local wheel house, with no network in the build."""
    from hub.host.images import ImageBuildError, build_image

    if dry_run:
        _dry_run(base, as_json)
        return
    reporter = RichReporter()
    try:
        result = build_image(cli_settings(), force=force, base=base, reporter=reporter, mirror=mirror)
    except ImageBuildError as exc:
        reporter.close()
        fail(str(exc))
    finally:
        reporter.close()
    if as_json:
        print_json(vars(result))
        return
    state = "up to date" if result.cached else "built"
    console.print(
        f"[bold green]{', '.join(result.tags)} {state}[/] in {result.seconds:.1f}s "
        f"(recipe {result.recipe_hash}, base {result.base})",
        highlight=False,
    )


def _dry_run(base: str, as_json: bool) -> None:
    from hub.host import images

    settings = cli_settings()
    try:
        p = images.plan(settings, base, base)  # the base's image ID joins the hash at build time
        files = images.recipe_files()
    except images.ImageBuildError as exc:
        fail(str(exc))
    doc = {
        "recipe": str(images.RECIPE_DIR.resolve()),
        "files": sorted(files),
        "requirements": p.requirements,
        "tags": p.tags,
        "recipe_hash_without_base_id": p.recipe_hash,
        "cache": str(settings.image_cache),
    }
    if as_json:
        print_json(doc)
        return
    console.print(
        f"recipe {doc['recipe']}: {len(files)} files; would tag {', '.join(p.tags)}", highlight=False
    )
    for req in p.requirements:
        console.print(f"  {req}", highlight=False)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Notebook and base images present on this Docker engine."""
    from rich.table import Table

    from hub.host.images import ImageBuildError, list_images

    try:
        rows = list_images(cli_settings())
    except ImageBuildError as exc:
        fail(str(exc))
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("No notebook image yet: run `tre images build`.")
        return
    table = Table("image", "id", "created", "size", "version", "recipe", "duckdb", "jupyterhub")
    for row in rows:
        table.add_row(*row.values())
    console.print(table)
