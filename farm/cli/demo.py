"""``farm demo``: the whole product path once, on embedded defaults.

Starts the embedded farm (local Ray with a ``cpu`` pool and a virtual ``h100`` pool, SQLite and
the disk store under FARM_HOME), creates a studio, show and shot, generates and uploads a
1,000,000-particle sea monster, submits sim -> render (tiles) -> assemble, shows progress live,
and prints where the EXR frames, previews and contact sheet are, and what the shot cost.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.text import Text

from farm import schemas
from farm.cli._console import console
from farm.errors import InvalidSpec
from studio_client import Client

if TYPE_CHECKING:
    from scheduler.embedded import EmbeddedFarm


def demo(
    frames: Annotated[int, typer.Option(min=1, help="frames to render")] = 8,
    particles: Annotated[int, typer.Option(min=1, help="particles in the sea monster")] = 1_000_000,
    width: Annotated[int, typer.Option(min=16, help="image width")] = 960,
    height: Annotated[int, typer.Option(min=16, help="image height")] = 540,
    tiles: Annotated[int, typer.Option(min=1, help="tiles per side (N x N grid)")] = 4,
    home: Annotated[
        Path | None, typer.Option(help="FARM_HOME for this run (default: $FARM_HOME)")
    ] = None,
) -> None:
    """Run a tiled particle shot end to end on an embedded farm (about a minute on 2 cores)."""
    from farm.settings import Settings
    from scheduler.embedded import EmbeddedFarm

    settings = Settings(home=home) if home else Settings()
    started = time.perf_counter()
    console.rule("[bold]Delta demo: a tiled particle shot on an embedded farm")
    console.print(f"FARM_HOME: {settings.home}")
    with console.status("starting the embedded farm (local Ray, SQLite, disk store)"):
        farm = EmbeddedFarm(settings).start()
    try:
        console.print(f"farm API on {farm.url} (OpenAPI at {farm.url}/docs)")
        for note in farm.runtime.notes:
            console.print(f"[yellow]note:[/] {note}")
        token = _demo_user(farm)
        with Client(farm.url, token, timeout_s=120) as client:
            show = _get_or_create_show(client, "seamonster")
            shot = _get_or_create_shot(client, show.id, "sh0100", "sq010")
            seed = _publish_seed(client, show.id, particles)
            from farm.particles.monster import monster_camera

            spec = schemas.JobSpec(
                name="seamonster_sh0100",
                shot_id=shot.id,
                frames=schemas.FrameRange(first=1, last=frames),
                resolution=schemas.Resolution(width=width, height=height),
                camera=monster_camera(),
                layers=(
                    schemas.LayerSpec(
                        name="sim",
                        kind="particle_sim",
                        pool="cpu",
                        input_asset_version=seed.id,
                        particles=particles,
                    ),
                    schemas.LayerSpec(
                        name="render",
                        kind="particle_render",
                        pool="h100",
                        depends_on=("sim",),
                        tiles=schemas.TilingSpec(cols=tiles, rows=tiles, overscan=8),
                    ),
                    schemas.LayerSpec(
                        name="comp", kind="assemble", pool="cpu", depends_on=("render",)
                    ),
                ),
            )
            job = client.submit(spec)
            console.print(
                f"submitted job {job.id}: {frames} frames x {tiles}x{tiles} tiles of "
                f"{particles:,} particles at {width}x{height}; sim on 'cpu', render on 'h100', "
                "assemble on 'cpu'"
            )
            from studio_client.cli._view import failures
            from studio_client.cli.jobs import watch_job

            job = watch_job(client, job.id)
            if job.state != "done":
                for line in failures(job):
                    console.print(Text(line, style="red"))
                raise typer.Exit(1)
            _show_outputs(client, job, settings.home / "fetched")
            check = client.check_frames(job.id)
            if check.problems:
                for problem in check.problems:
                    console.print(Text(f"frame {problem.frame}: {problem.problem}", "red"))
                raise typer.Exit(1)
            console.print(f"[green]check-frames: all {check.frames_checked} frames are good[/]")
            from studio_client.cli.jobs import print_report

            print_report(client.report(show.id))
    finally:
        farm.stop()
    console.print(f"demo finished in {time.perf_counter() - started:.1f} s")


def _demo_user(farm: EmbeddedFarm) -> str:
    """A fresh TD in the ``demo`` studio (tokens are stored hashed, so each run makes a user)."""
    from sqlalchemy import select

    from farm.db import models as m
    from farm.db import queries
    from farm.vocab import Role

    with farm.context.db.session() as session:
        studio = session.scalar(select(m.Studio).where(m.Studio.name == "demo"))
        if studio is None:
            studio = queries.create_studio(session, "demo")
        _, token = queries.create_user(session, studio, f"td-{secrets.token_hex(3)}", Role.TD)
    return token


def _get_or_create_show(client: Client, name: str) -> schemas.ShowOut:
    for show in client.shows():
        if show.name == name:
            return show
    return client.create_show(name, title="The Sea Monster")


def _get_or_create_shot(client: Client, show_id: int, name: str, sequence: str) -> schemas.ShotOut:
    for shot in client.shots(show_id):
        if shot.name == name:
            return shot
    return client.create_shot(show_id, name, sequence=sequence)


def _publish_seed(client: Client, show_id: int, particles: int) -> schemas.AssetVersionOut:
    from farm.particles.cache import write_cache
    from farm.particles.monster import sea_monster

    with console.status(f"generating a {particles:,}-particle sea monster"):
        seed = sea_monster(particles)
    with tempfile.TemporaryDirectory(prefix="delta-demo-") as tmp:
        path = Path(tmp) / "seamonster_seed.dpc"
        write_cache(path, [seed])
        with Progress(
            TextColumn("uploading seed cache"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("upload", total=path.stat().st_size * 2)
            seen = {"hash": 0}

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done + seen["hash"])
                if done == total:
                    seen["hash"] = total

            version = client.publish(
                show_id, path, asset="seamonster_seed", kind="particle_seed", progress=advance
            )
    console.print(
        f"published asset seamonster_seed v{version.version} "
        f"({version.size_bytes / 1e6:.1f} MB, sha256 {version.content_hash[:12]}…)"
    )
    return version


def _show_outputs(client: Client, job: schemas.JobOut, out: Path) -> None:
    """Download the frames through the API, as `farm fetch` does, and say where they are."""
    comp = next(layer for layer in job.layers if layer.kind == "assemble")
    for _ in range(50):  # the contact sheet is drawn just after the job ends
        if comp.contact_sheet_hash is not None:
            break
        time.sleep(0.1)
        job = client.job(job.id)
        comp = next(layer for layer in job.layers if layer.kind == "assemble")
    with console.status(f"fetching the frames through the API into {out}"):
        paths = client.fetch(job, out, layers=[comp.name])
    exrs = [p for p in paths if p.suffix == ".exr"]
    if not exrs:
        return
    folder = exrs[0].parent
    console.line()
    console.print(
        f"[bold]EXR frames[/] ({len(exrs)}, fetched with `farm fetch {job.id}`): {folder}/",
        soft_wrap=True,
    )
    for path in exrs[:3]:
        console.print(f"  {path}")
    if len(exrs) > 3:
        console.print(f"  … {len(exrs) - 3} more")
    if (folder / "contact_sheet.png").exists():
        console.print(f"[bold]contact sheet[/]: {folder / 'contact_sheet.png'}", soft_wrap=True)
    if any(p.suffix == ".png" for p in paths):
        console.print(f"[bold]previews[/]: {folder}/*.png")


def seed(
    out: Annotated[Path, typer.Argument(help="the particle seed cache to write (.dpc)")],
    particles: Annotated[
        int, typer.Option(min=1, max=50_000_000, help="particles in the sea monster")
    ] = 1_000_000,
    random_seed: Annotated[int, typer.Option("--seed", help="the scene's random seed")] = 0,
) -> None:
    """Write the demo's sea monster as a particle seed cache, to publish and simulate.

    A particle_sim layer starts from a published seed; without this only the SDK or `farm demo`
    could make one. Publish it with `farm upload OUT --show SHOW --asset NAME --kind
    particle_seed --publish` and give the version's id as the sim layer's input_asset_version.
    """
    from farm.exr.io import atomic_output
    from farm.particles.cache import write_cache
    from farm.particles.monster import sea_monster

    if out.is_dir():
        raise InvalidSpec(f"{out} is a folder: name the .dpc file to write", field="out")
    if not out.parent.is_dir():
        raise InvalidSpec(f"folder {out.parent} does not exist: make it first", field="out")
    with console.status(f"generating a {particles:,}-particle sea monster"):
        frame = sea_monster(particles, seed=random_seed)
    with atomic_output(out, suffix=".dpc") as tmp:  # never a half-written cache
        write_cache(tmp, [frame])
    console.print(
        f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {particles:,} particles, frame "
        f"{frame.frame}); publish it with: farm upload {out} --show SHOW --asset NAME "
        "--kind particle_seed --publish",
        soft_wrap=True,
    )
