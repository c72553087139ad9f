"""The ``farm`` command line (typer + rich). An error is one ``error: ...`` line and an exit code.

One console script for everyone: the client's commands (submit, status, check-frames, report)
are built here; the farm host's commands (server, admin, demo, simulate) live with the server in
:mod:`farm.cli` and are added only where it imports, that is where the ``server`` extra is
installed. This package must not import the database, the API app, Ray or NumPy, even through
``farm.cli`` (``tests/unit/test_client_imports.py``).

Exit codes: 0 done; 1 a job failed or an unexpected error; 2 bad input (spec, argument, file);
3 authentication or not found; 4 conflict; 5 farm unreachable.
"""

from __future__ import annotations

import sys

import typer

from studio_client.cli import assets, fetch, jobs, login, shows, upload, watch

app = typer.Typer(
    name="farm",
    help="Delta render farm: run a farm, submit shots, watch tiles, read costs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Markdown: a docstring's wrapped lines flow as one paragraph (in "rich" mode each line
    # break was kept, and help broke mid-sentence).
    rich_markup_mode="markdown",
)
app.command()(jobs.submit)
app.command()(jobs.template)
app.command()(jobs.status)
app.command("check-frames")(jobs.check_frames)
app.command()(jobs.log)
app.command()(jobs.report)
for _command in (jobs.pause, jobs.resume, jobs.cancel, jobs.retry):
    app.command()(_command)
# `farm priority 3 -1`: the -1 is a value (refused by its range in one line), not an option.
app.command(context_settings={"ignore_unknown_options": True})(jobs.priority)
app.command()(login.login)
app.command()(login.logout)
app.add_typer(login.tokens_app, name="tokens")
app.add_typer(shows.show_app, name="show")
app.add_typer(shows.shot_app, name="shot")
app.command()(assets.assets)
app.command()(assets.share)
app.command()(upload.upload)
app.command()(fetch.fetch)
app.command()(watch.watch)

try:
    from farm.cli import register as register_host_commands
except ImportError:
    # A client-only install (an artist's workstation, no ``server`` extra): farm.cli refuses to
    # import, and the server's commands are simply not there.
    pass
else:
    register_host_commands(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``farm`` console script."""
    from farm.errors import FarmError

    try:
        # Without standalone mode, click hands back the code of a typer.Exit (and 130 for
        # Ctrl-C) instead of exiting: it is this function's to return.
        code = app(args=argv, standalone_mode=False)
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
        # A usage error (unknown command, missing argument): click's ClickException, or since
        # typer 0.26 typer's own copy of it. Such typer no longer installs click, so a client-only
        # install has none to import; both kinds have format_message.
        format_message = getattr(exc, "format_message", None)
        if callable(format_message):
            print(f"error: {format_message()}", file=sys.stderr)
            return 2
        print(f"error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
