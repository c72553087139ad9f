"""``farm submit``, ``farm status``, ``farm check-frames``, ``farm report``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table
from rich.text import Text

from farm import schemas
from farm.errors import InvalidSpec, NotFound, invalid_spec_from_errors
from farm.states import TileState
from studio_client import Client
from studio_client.cli._common import console, make_client
from studio_client.cli._view import failures, job_view

Url = Annotated[str | None, typer.Option("--url", help="API URL (FARM_API_URL)")]
Token = Annotated[str | None, typer.Option("--token", help="API token (FARM_TOKEN)")]


def load_spec(path: Path) -> schemas.JobSpec:
    """Read and validate a job spec file; errors name the field, nothing is sent."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InvalidSpec(f"{path}: no such file", field="spec") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidSpec(f"{path}: cannot read it as a JSON file ({exc})", field="spec") from exc
    except json.JSONDecodeError as exc:
        raise InvalidSpec(
            f"{path}: not JSON ({exc.msg} at line {exc.lineno})", field="spec"
        ) from exc
    try:
        return schemas.JobSpec.model_validate(raw)
    except ValidationError as exc:
        error = invalid_spec_from_errors(list(exc.errors()))
        raise InvalidSpec(f"{path}: {error.message}", field=error.field) from exc


def _read_template(path: Path) -> str | None:
    """The file's text when it is an OpenJD job template (YAML, or JSON with a
    ``specificationVersion``); None for a farm job spec."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InvalidSpec(f"{path}: no such file", field="spec") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidSpec(f"{path}: cannot read it ({exc})", field="spec") from exc
    if path.suffix.lower() in (".yaml", ".yml") or '"specificationVersion"' in text[:4096]:
        return text
    return None


def _asset_wait(text: str) -> schemas.AssetWait:
    asset, _, version = text.partition(":")
    if not (asset.isdigit() and (version.isdigit() or not version)):
        raise InvalidSpec(
            f"--after-asset {text!r}: write ASSET_ID:MIN_VERSION, e.g. 42:3", field="after_asset"
        )
    return schemas.AssetWait(asset_id=int(asset), min_version=int(version or 1))


def _parameters(pairs: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InvalidSpec(f"-p {pair!r}: write NAME=VALUE", field="param")
        values[name] = value
    return values


def _shot_id(client: Client, shot: str | None, show: str | None) -> int:
    """A shot given by id, or by ``SEQ/SHOT`` (or ``SHOT``) in ``--show``."""
    if shot is None:
        raise InvalidSpec(
            "an OpenJD template runs in a shot: give --shot ID or --show SHOW --shot SEQ/SHOT",
            field="shot",
        )
    if shot.isdigit():
        return int(shot)
    if show is None:
        raise InvalidSpec(f"--shot {shot!r} by name needs --show", field="show")
    sequence, _, name = shot.rpartition("/")
    for candidate in client.shots(client.show(show).id):
        if candidate.name == name and (not sequence or candidate.sequence == sequence):
            return candidate.id
    raise NotFound(f"show {show!r} has no shot {shot!r}", field="shot")


def watch(client_url: str | None, token: str | None, job_id: int) -> schemas.JobOut:
    """Show the job live until it finishes; returns its last state."""
    with make_client(client_url, token) as client:
        return watch_job(client, job_id)


def watch_job(client: Client, job_id: int) -> schemas.JobOut:
    """Layer progress bars and the tile grid, drawn live from the job's event stream (no
    polling) until the job ends."""
    from studio_client.cli.watch import follow_job

    return follow_job(client, job_id)


def submit(
    spec: Annotated[
        Path, typer.Argument(help="a job spec (JSON) or an OpenJD job template (YAML or JSON)")
    ],
    wait: Annotated[bool, typer.Option("--wait", help="watch it until it finishes")] = False,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="a template's job parameter: NAME=VALUE (repeat)"),
    ] = None,
    shot: Annotated[
        str | None,
        typer.Option("--shot", help="templates: the shot to run in, its id or SEQ/SHOT"),
    ] = None,
    show: Annotated[
        str | None, typer.Option("--show", help="templates: the show of a --shot given by name")
    ] = None,
    env: Annotated[
        list[Path] | None,
        typer.Option("--env", help="templates: an OpenJD environment template (repeat)"),
    ] = None,
    after: Annotated[
        list[int] | None,
        typer.Option("--after", help="templates: start once this job is done (repeat)"),
    ] = None,
    after_asset: Annotated[
        list[str] | None,
        typer.Option(
            "--after-asset",
            help="templates: start once asset ID has a version >= N published: ID:N (repeat)",
        ),
    ] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Submit a job spec or an Open Job Description template; prints the job id. With --wait,
    exits 0 only when the job succeeded."""
    template = _read_template(spec)
    if template is None and (param or shot or env or after or after_asset):
        raise InvalidSpec(
            f"{spec}: -p, --shot, --env and --after are for OpenJD templates; a job spec "
            "says after_jobs and after_assets itself",
            field="spec",
        )
    with make_client(url, token) as client:
        if template is None:
            job = client.submit(load_spec(spec))
        else:
            job = client.submit_template(
                template,
                shot_id=_shot_id(client, shot, show),
                parameters=_parameters(param or []),
                environments=list(env or []),
                after_jobs=after or [],
                after_assets=[_asset_wait(text) for text in after_asset or []],
            )
    console.print(f"submitted job [bold]{job.id}[/] ({job.name}): {len(job.layers)} layers")
    if wait:
        finished = watch(url, token, job.id)
        _exit_for(finished)


def template(
    spec: Annotated[Path, typer.Argument(help="a job spec (JSON) of the farm's own layers")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="write it here instead of printing it")
    ] = None,
) -> None:
    """Write a job spec as an Open Job Description template: its layers as steps, frames and
    tiles as task parameters, resolution and camera as job parameters. `farm submit` takes it
    back (`-p Frames=1-8` and the rest change it at submit); nothing is sent to the farm."""
    from farm.openjd_layers import template_yaml, to_template
    from studio_client._files import write_text_atomically

    template_doc = to_template(load_spec(spec))
    text = template_yaml(template_doc)
    if out is None:
        print(text, end="")
        return
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise InvalidSpec(f"--out {out}: no folder {folder}; create it first", field="out")
    write_text_atomically(out, text, private=False)  # never a half-written file
    console.print(f"wrote {out}: {len(template_doc['steps'])} steps")


def status(
    job_id: Annotated[int, typer.Argument(help="job id")],
    follow: Annotated[bool, typer.Option("--watch", "-w", help="follow until done")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="each layer's tasks, states and dependencies as JSON")
    ] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Show a job's layers (progress bars) and its tiles (a live grid)."""
    if follow:
        _exit_for(watch(url, token, job_id))
        return
    with make_client(url, token) as client:
        job = client.job(job_id)
    if as_json:
        print(json.dumps(status_json(job), indent=2))
        return
    console.print(job_view(job))


def status_json(job: schemas.JobOut) -> dict[str, object]:
    """What `farm status --json` prints: the job, and per layer (an OpenJD step) its task
    count, tasks by state, tiles by state and what it waits for. Scripts may rely on it."""
    return {
        "id": job.id,
        "name": job.name,
        "state": job.state.value,
        "layers": [
            {
                "name": layer.name,
                "step": layer.step,
                "kind": layer.kind.value,
                "state": layer.state.value,
                "tasks": layer.frames_total,
                "task_states": {s.value: n for s, n in layer.frame_counts.items() if n},
                "tile_states": {s.value: n for s, n in layer.tile_counts.items() if n},
                "depends_on": layer.depends_on,
                "wait_for": layer.wait_for,
            }
            for layer in job.layers
        ],
    }


def _exit_for(job: schemas.JobOut) -> None:
    if job.state == TileState.DONE:
        return
    for line in failures(job):
        console.print(Text(line, style="red"))
    raise typer.Exit(1)


def log(
    job_id: Annotated[int, typer.Argument(help="job id")],
    layer: Annotated[str | None, typer.Option("--layer", help="default: the only layer")] = None,
    frame: Annotated[int | None, typer.Option("--frame", help="default: the first frame")] = None,
    tile: Annotated[int, typer.Option("--tile", help="tile index in the frame")] = 0,
    url: Url = None,
    token: Token = None,
) -> None:
    """Print a task's log (a command layer's output and the session's own lines)."""
    with make_client(url, token) as client:
        if layer is None or frame is None:
            job = client.job(job_id)
            if layer is None:
                if len(job.layers) != 1:
                    names = ", ".join(x.name for x in job.layers)
                    raise InvalidSpec(
                        f"job {job_id} has layers {names}: give --layer", field="layer"
                    )
                layer = job.layers[0].name
            chosen = next((x for x in job.layers if x.name == layer), None)
            if chosen is None or not chosen.frames:
                raise NotFound(f"job {job_id} has no frames in layer {layer!r}", field="layer")
            frame = chosen.frames[0].number if frame is None else frame
        text = client.log(job_id, layer=layer, frame=frame, tile=tile)
    console.out(text, end="", highlight=False)


def check_frames(
    job_id: Annotated[int, typer.Argument(help="job id")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Re-read a job's frames: missing, wrong size or channels, NaN/inf pixels."""
    with make_client(url, token) as client:
        result = client.check_frames(job_id)
    if not result.problems:
        console.print(f"[green]all {result.frames_checked} frames of job {job_id} are good[/]")
        return
    for problem in result.problems:
        console.print(Text(f"frame {problem.frame}: {problem.problem} ({problem.path})", "red"))
    raise typer.Exit(1)


def report(
    show: Annotated[str, typer.Option("--show", help="show name or id")],
    url: Url = None,
    token: Token = None,
) -> None:
    """What a show has cost so far: by shot, department, pool and job, with bars."""
    with make_client(url, token) as client:
        result = client.report(client.show(show).id)
    print_report(result)


def readable(amount: float) -> str:
    """A cost or hours as a producer reads them: two decimals from 0.01 up, else the two
    digits that matter (``0.000046``, never ``4.6e-05``)."""
    if amount == 0:
        return "0"
    if abs(amount) >= 0.01:
        return f"{amount:,.2f}"
    digits = 1 - math.floor(math.log10(abs(amount)))  # two significant digits
    return f"{amount:.{digits}f}"


def print_report(report: schemas.CostReport) -> None:
    console.print(
        f"[bold]cost of show {report.show}[/]: {readable(report.total)} {report.currency} "
        f"for {readable(report.node_hours)} node-hours"
    )
    for title, lines in (
        ("by shot", report.by_shot),
        ("by department", report.by_department),
        ("by pool", report.by_pool),
        ("by job", report.by_job),
    ):
        table = Table(title=title, title_justify="left")
        table.add_column(title.removeprefix("by "))
        table.add_column(f"cost ({report.currency})", justify="right")
        table.add_column("share", no_wrap=True, min_width=BAR)
        table.add_column("node-h", justify="right")
        table.add_column("cpu-h", justify="right")
        table.add_column("attempts", justify="right")
        top = max((line.cost for line in lines), default=0.0) or 1.0
        for line in lines:
            bar = "█" * max(1, round(BAR * line.cost / top)) if line.cost > 0 else ""
            table.add_row(
                line.key,
                readable(line.cost),
                f"[cyan]{bar}[/]",
                readable(line.node_hours),
                readable(line.cpu_hours),
                str(line.attempts),
            )
        console.print(table)


BAR = 12
"""Width of a cost report's share bars: they fit beside the figures in 80 columns."""

JobArg = Annotated[int, typer.Argument(help="the job's id", min=1)]
WaitOpt = Annotated[
    float, typer.Option("--wait", help="seconds to wait for the farm to apply it", min=0, max=30)
]


def _print_command(command: schemas.JobCommandOut) -> None:
    if command.applied_at is None:
        console.print(f"job {command.job_id}: {command.action} queued ({command.reason})")
    else:
        console.print(f"job {command.job_id}: {command.result}")


def pause(job_id: JobArg, wait: WaitOpt = 10.0, url: Url = None, token: Token = None) -> None:
    """Pause a job: nothing new is dispatched; what runs finishes."""
    with make_client(url, token) as client:
        _print_command(client.pause(job_id, wait_s=wait))


def resume(job_id: JobArg, wait: WaitOpt = 10.0, url: Url = None, token: Token = None) -> None:
    """Resume a paused job."""
    with make_client(url, token) as client:
        _print_command(client.resume(job_id, wait_s=wait))


def cancel(job_id: JobArg, wait: WaitOpt = 10.0, url: Url = None, token: Token = None) -> None:
    """Cancel a job: unfinished tiles are cancelled, running ones stopped on their nodes."""
    with make_client(url, token) as client:
        _print_command(client.cancel(job_id, wait_s=wait))


def retry(
    job_id: JobArg,
    layer: Annotated[
        list[str] | None, typer.Option("--layer", "-l", help="only this layer (repeatable)")
    ] = None,
    frame: Annotated[
        list[int] | None, typer.Option("--frame", "-f", help="only this frame (repeatable)")
    ] = None,
    wait: WaitOpt = 10.0,
    url: Url = None,
    token: Token = None,
) -> None:
    """Run a job's failed and cancelled tiles again, each with a fresh budget of attempts."""
    with make_client(url, token) as client:
        _print_command(client.retry(job_id, layers=layer, frames=frame, wait_s=wait))


def priority(
    job_id: JobArg,
    value: Annotated[int, typer.Argument(help="0-100, higher first (default 50)", min=0, max=100)],
    url: Url = None,
    token: Token = None,
) -> None:
    """Reorder your studio's own work: a job's priority among its jobs."""
    with make_client(url, token) as client:
        job = client.set_priority(job_id, value)
    console.print(f"job {job.id}: priority {job.priority}")
