"""``farm admin quota|licence|rush``: the farm's sharing rules, straight in its database.

Like ``farm admin create-studio`` these run on the farm's own machine against the database that
the ``FARM_*`` settings name; the API's ``/admin`` routes do the same for an ``operator`` user.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from farm.cli._console import console

if TYPE_CHECKING:
    from pydantic import BaseModel

quota = typer.Typer(help="Studios' shares of each pool: guarantee, weight, ceiling (slots).")
licence = typer.Typer(help="Licence counters (e.g. houdini) and the seats kept per studio.")


def _validated(model: type[BaseModel], **values: Any) -> Any:
    """``model(**values)``, or the farm's one-line InvalidSpec naming the option."""
    from pydantic import ValidationError

    from farm.errors import invalid_spec_from_errors

    try:
        return model(**values)
    except ValidationError as exc:
        raise invalid_spec_from_errors(list(exc.errors())) from exc


def _guarantees(pairs: list[str]) -> dict[str, int]:
    """``["nimble=5", "otter=2"]`` -> ``{"nimble": 5, "otter": 2}``; bad pairs are exit 2."""
    from farm.errors import InvalidSpec

    out: dict[str, int] = {}
    for pair in pairs:
        studio, _, seats = pair.partition("=")
        if not studio or not seats.strip().isdigit():
            raise InvalidSpec(
                f"--guarantee {pair!r}: write STUDIO=N, e.g. --guarantee nimble=5",
                field="guarantee",
            )
        out[studio.strip()] = int(seats)
    return out


@quota.command("set")
def set_quota(
    studio: Annotated[str, typer.Argument(help="studio name")],
    pool: Annotated[str, typer.Argument(help="pool name")],
    guarantee: Annotated[int, typer.Option(help="slots the studio always gets")] = 0,
    weight: Annotated[float, typer.Option(help="share of idle slots beyond the guarantee")] = 1.0,
    ceiling: Annotated[int | None, typer.Option(help="most slots it may hold")] = None,
) -> None:
    """Set a studio's quota on a pool (replaces any earlier one); applies on the next tick."""
    from farm import schemas
    from farm.cli.server import _context
    from farm.db import shares

    spec = _validated(schemas.QuotaCreate, guarantee=guarantee, weight=weight, ceiling=ceiling)
    with _context().db.session() as session:
        row = shares.set_quota(session, studio, pool, spec)
        out = schemas.QuotaOut.model_validate(row)
    ceiling_said = "none" if out.ceiling is None else str(out.ceiling)
    if out.ceiling == 0:
        ceiling_said = "0 (the studio gets none of this pool)"
    console.print(
        f"quota of {out.studio} on {out.pool}: guarantee {out.guarantee}, weight {out.weight:g}, "
        f"ceiling {ceiling_said}"
    )


@quota.command("list")
def list_quotas() -> None:
    """Every studio's quotas; a studio without one has weight 1, no guarantee, no ceiling."""
    from farm import schemas
    from farm.cli.server import _context
    from farm.db import shares

    with _context().db.session() as session:
        rows = [schemas.QuotaOut.model_validate(q) for q in shares.list_quotas(session)]
    table = Table(title="quotas (slots)", title_justify="left")
    for column in ("studio", "pool", "guarantee", "weight", "ceiling"):
        table.add_column(column, justify="left" if column in ("studio", "pool") else "right")
    for q in rows:
        ceiling = str(q.ceiling) if q.ceiling is not None else "-"
        table.add_row(q.studio, q.pool, str(q.guarantee), f"{q.weight:g}", ceiling)
    console.print(table)


@quota.command("delete")
def delete_quota(
    studio: Annotated[str, typer.Argument(help="studio name")],
    pool: Annotated[str, typer.Argument(help="pool name")],
) -> None:
    """Drop a quota: the studio goes back to weight 1, no guarantee, no ceiling."""
    from farm.cli.server import _context
    from farm.db import shares

    with _context().db.session() as session:
        shares.delete_quota(session, studio, pool)
    console.print(f"quota of {studio} on {pool} removed")


# A negative count is an argument (refused by its range in one line), not an unknown option.
@licence.command("set", context_settings={"ignore_unknown_options": True})
def set_licence(
    name: Annotated[str, typer.Argument(help="licence name, e.g. houdini")],
    count: Annotated[int, typer.Argument(help="seats in use at most")],
    guarantee: Annotated[
        list[str] | None, typer.Option(help="STUDIO=N seats kept for a studio (repeatable)")
    ] = None,
) -> None:
    """Set a licence's seats and per-studio guarantees (replaces earlier guarantees)."""
    from farm import schemas
    from farm.cli.server import _context
    from farm.db import shares

    spec = _validated(
        schemas.LicenceCreate, count=count, guarantees=_guarantees(list(guarantee or []))
    )
    with _context().db.session() as session:
        out = shares.set_licence(session, name, spec)
    kept = ", ".join(f"{s}={n}" for s, n in out.guarantees.items()) or "none kept"
    console.print(f"licence {out.name}: {out.count} seats ({kept})")


@licence.command("list")
def list_licences() -> None:
    """Every licence counter with its per-studio guarantees."""
    from farm.cli.server import _context
    from farm.db import shares

    with _context().db.session() as session:
        rows = shares.list_licences(session)
    table = Table(title="licences", title_justify="left")
    for column in ("licence", "seats", "guarantees"):
        table.add_column(column)
    for row in rows:
        kept = ", ".join(f"{s}={n}" for s, n in row.guarantees.items()) or "-"
        table.add_row(row.name, str(row.count), kept)
    console.print(table)


def rush(
    job: Annotated[int, typer.Argument(help="job id", min=1)],
    off: Annotated[bool, typer.Option("--off", help="clear the rush mark")] = False,
) -> None:
    """Mark a job rush (it may preempt other work), or clear it with --off."""
    from farm.cli.server import _context
    from farm.db import shares

    with _context().db.session() as session:
        row = shares.set_rush(session, job, not off)
        name = row.name
    console.print(f"job {job} {name}: rush {'off' if off else 'on'}")
