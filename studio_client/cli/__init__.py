"""The ``farm`` command line (typer + rich). An error is one ``error: ...`` line and an exit code.

Exit codes: 0 done; 1 a job failed or an unexpected error; 2 bad input (spec, argument, file);
3 authentication or not found; 4 conflict; 5 farm unreachable.
"""

from __future__ import annotations

import sys

import typer

from studio_client.cli import jobs, operate, server
from studio_client.cli.demo import demo
from studio_client.cli.simulate import simulate

app = typer.Typer(
    name="farm",
    help="Delta render farm: run a farm, submit shots, watch tiles, read costs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(server.server)
app.command()(demo)
app.command()(jobs.submit)
app.command()(jobs.status)
app.command("check-frames")(jobs.check_frames)
app.command()(jobs.report)
app.command()(simulate)
server.admin.add_typer(operate.quota, name="quota")
server.admin.add_typer(operate.licence, name="licence")
server.admin.command()(operate.rush)
app.add_typer(server.admin, name="admin")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``farm`` console script."""
    from farm.errors import FarmError

    try:
        app(args=argv, standalone_mode=False)
    except FarmError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        import click

        if isinstance(exc, click.ClickException):
            print(f"error: {exc.format_message()}", file=sys.stderr)
            return 2
        print(f"error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
