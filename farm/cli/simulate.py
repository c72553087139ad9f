"""``farm simulate``: replay a trace through the farm's planner on a simulated clock.

The simulator lives in ``scheduler.simulate`` and is imported inside the command: every ``farm``
command loads this module, and ``studio_client.cli`` must never pull in the scheduler (nor,
through it, NumPy or Ray).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from farm.cli._console import console
from farm.errors import InvalidSpec

if TYPE_CHECKING:
    from scheduler.simulate import Farm, Report


def simulate(
    trace: Annotated[
        Path | None, typer.Argument(help="JSONL trace: one job per line (see scheduler.simulate)")
    ] = None,
    farm: Annotated[
        Path | None,
        typer.Option(help="farm description (.toml or .json): pools, quotas, licences, policy"),
    ] = None,
    half_life: Annotated[
        float | None, typer.Option(min=1.0, help="usage half-life in seconds (overrides --farm)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    generate: Annotated[
        Path | None, typer.Option(help="write a synthetic busy-day trace here instead")
    ] = None,
    studios: Annotated[int, typer.Option(min=1, help="studios of a generated trace")] = 138,
    hours: Annotated[float, typer.Option(min=0.1, help="length of a generated day")] = 24.0,
    seed: Annotated[int, typer.Option(help="seed of a generated trace")] = 1,
) -> None:
    """Replay a trace through the same planner with a simulated clock (no Ray, no database).

    Prints, per studio, slot-seconds received against entitled (the fair-share error) and
    waiting times, and per pool the utilisation. With --generate, writes a synthetic trace
    (and the farm description that goes with it, beside it as .farm.json) instead.
    """
    from scheduler.simulate_traces import TraceError

    try:
        if generate is not None:
            _generate(generate, studios=studios, hours=hours, seed=seed)
            return
        if trace is None:
            raise InvalidSpec(
                "give a TRACE.jsonl to replay, or --generate OUT.jsonl", field="trace"
            )
        report = _replay(trace, farm, half_life)
    except TraceError as exc:
        where = trace if generate is None else generate
        raise InvalidSpec(f"{where}: {exc}", field=exc.field or None) from exc
    except OSError as exc:
        raise InvalidSpec(f"cannot read or write a file ({exc})", field="trace") from exc
    if as_json:
        print(json.dumps(report.to_json()))
    else:
        _print(report)
    if not report.ok:
        raise typer.Exit(1)


def _generate(out: Path, *, studios: int, hours: float, seed: int) -> None:
    from scheduler.simulate_traces import generate_farm, generate_trace, write_trace

    count = write_trace(generate_trace(seed, studios=studios, hours=hours), out)
    farm_path = out.with_suffix(".farm.json")
    farm_path.write_text(json.dumps(generate_farm(seed, studios=studios), indent=2) + "\n")
    console.print(f"wrote {count} jobs to {out} and the farm to {farm_path}")
    console.print(f"replay with: farm simulate {out} --farm {farm_path}")


def _replay(trace: Path, farm_path: Path | None, half_life: float | None) -> Report:
    import dataclasses

    from scheduler.simulate import Farm, load_farm, simulate
    from scheduler.simulate_traces import TraceError, generate_farm, load_trace

    jobs = load_trace(trace)
    studios = len({job.studio for job in jobs})
    farm: Farm
    if farm_path is not None:
        try:
            farm = load_farm(farm_path)
        except TraceError as exc:  # the farm file's fault: named instead of the trace
            raise InvalidSpec(f"{farm_path}: {exc}", field="farm") from exc
    else:
        farm = Farm.from_mapping({**generate_farm(1, studios=studios), "quotas": {}})
    if half_life is not None:
        farm = dataclasses.replace(
            farm, policy=dataclasses.replace(farm.policy, half_life_s=half_life)
        )
    return simulate(jobs, farm)


def _print(report: Report) -> None:
    studios = Table(title="Studios: slot-seconds received against entitled")
    for column in ("studio", "jobs", "received", "entitled", "error", "wait mean", "wait p95"):
        studios.add_column(column, justify="left" if column == "studio" else "right")
    for row in report.studios:
        error = "-" if row.error is None else f"{row.error:.1%}"
        style = "red" if row.error is not None and row.error > 0.05 else None
        studios.add_row(
            row.studio,
            str(row.jobs),
            f"{row.received_slot_s:,.0f}",
            f"{row.entitled_slot_s:,.0f}",
            error,
            _duration(row.wait_mean_s),
            _duration(row.wait_p95_s),
            style=style,
        )
    console.print(studios)
    pools = Table(title="Pools")
    for column in ("pool", "slots", "busy slot-s", "utilisation"):
        pools.add_column(column, justify="left" if column == "pool" else "right")
    for pool in report.pools:
        pools.add_row(
            pool.pool, str(pool.capacity), f"{pool.busy_slot_s:,.0f}", f"{pool.utilisation:.1%}"
        )
    console.print(pools)
    console.print(
        f"fair-share error {report.fair_share_error:.1%} (worst: {report.fair_share_worst}, "
        f"{report.studios_measured} studios measured); makespan {_duration(report.makespan_s)}; "
        f"wait mean {_duration(report.wait_mean_s)}, p95 {_duration(report.wait_p95_s)}; "
        f"{report.preemptions} preemptions; {report.tiles:,} tiles of {report.jobs} jobs"
    )
    for check, held in report.checks.items():
        mark = "[green]ok[/]" if held else "[red]FAILED[/]"
        console.print(f"{mark} {check.replace('_', ' ')}")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
