"""An artist's workstation runs the client without the server's dependencies (issue 20).

``pip install delta-farm`` brings the SDK and the ``farm`` CLI's client commands; the database,
the API app, Ray, NumPy, numba and OpenEXR come only with the ``server`` extra. Each check runs
in a fresh interpreter, since this test process has long imported everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TypedDict

SERVER_ONLY = (
    "sqlalchemy",
    "alembic",
    "fastapi",
    "starlette",
    "uvicorn",
    "ray",
    "numpy",
    "numba",
    "OpenEXR",
    "PIL",
    "boto3",
    "botocore",
    "psycopg",
    "pydantic_settings",
)
"""Top-level modules of the ``server`` extra (and what they bring): never loaded by the client."""

SERVER_PARTS = ("scheduler", "farm.db", "farm.api", "farm.settings", "farm.storage", "farm.exr")
"""Our own server-side packages: never loaded by the client either."""

CLIENT_COMMANDS = {
    "submit",
    "status",
    "check-frames",
    "report",
    "pause",
    "resume",
    "cancel",
    "retry",
    "priority",
    "login",
    "logout",
    "tokens",
    "show",
    "shot",
    "assets",
    "share",
    "upload",
    "fetch",
    "watch",
    "log",
    "template",
}
HOST_COMMANDS = {"server", "worker", "admin", "demo", "seed", "simulate"}

# Prints, as JSON: the ``farm`` command names, what ``farm --help`` printed and returned, what
# ``farm admin`` said and returned, and every module loaded by then. BLOCKED names modules to
# make absent first: ``None`` in sys.modules makes ``import`` raise ImportError and
# ``importlib.util.find_spec`` answer None, as on a machine where they were never installed.
# Click too, where typer does not use it (typer >= 0.26 carries its own copy).
PROBE = textwrap.dedent(
    """
    import contextlib, io, json, sys

    for name in BLOCKED:
        sys.modules[name] = None
    import typer.main

    if BLOCKED and "click" not in sys.modules:
        sys.modules["click"] = None

    import studio_client, studio_client.cli

    group = typer.main.get_command(studio_client.cli.app)
    commands = sorted(group.commands)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = studio_client.cli.main(["--help"])
    with contextlib.redirect_stderr(err):
        admin_rc = studio_client.cli.main(["admin", "--help"])
    loaded = sorted(name for name, module in sys.modules.items() if module is not None)
    print(json.dumps({
        "commands": commands,
        "help": out.getvalue(),
        "rc": rc,
        "admin_rc": admin_rc,
        "admin_err": err.getvalue(),
        "loaded": loaded,
    }))
    """
)


class Probe(TypedDict):
    commands: list[str]
    help: str
    rc: int
    admin_rc: int
    admin_err: str
    loaded: list[str]


def probe(blocked: tuple[str, ...] = ()) -> Probe:
    code = f"BLOCKED = {list(blocked)!r}\n{PROBE}"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert done.returncode == 0, done.stderr
    result: Probe = json.loads(done.stdout.splitlines()[-1])
    return result


def server_modules_in(loaded: list[str]) -> list[str]:
    return sorted(
        name
        for name in loaded
        if name.split(".")[0] in SERVER_ONLY
        or any(name == part or name.startswith(part + ".") for part in SERVER_PARTS)
    )


def test_the_client_and_its_cli_load_nothing_of_the_server() -> None:
    """On a full install too: `farm --help` adds the host's commands, but none of their weight."""
    result = probe()
    assert result["rc"] == 0
    assert server_modules_in(result["loaded"]) == []
    assert set(result["commands"]) == CLIENT_COMMANDS | HOST_COMMANDS
    assert "submit" in result["help"]
    assert "admin" in result["help"]
    assert result["admin_rc"] == 0


def test_a_client_only_install_has_the_client_commands_and_no_server_ones() -> None:
    result = probe(blocked=SERVER_ONLY)
    assert result["rc"] == 0
    assert set(result["commands"]) == CLIENT_COMMANDS
    for command in CLIENT_COMMANDS:
        assert command in result["help"]
    assert "admin" not in result["help"]
    assert result["admin_rc"] == 2
    assert "error: No such command 'admin'" in result["admin_err"]


def test_the_host_commands_say_which_extra_they_need() -> None:
    code = (
        f"import sys\nfor name in {list(SERVER_ONLY)!r}:\n    sys.modules[name] = None\n"
        "import farm.cli"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert "pip install 'delta-farm[server]'" in done.stderr


def test_the_probe_sees_an_import_of_the_server() -> None:
    """The check above can fail: a module that loads SQLAlchemy is caught by it."""
    code = "import sys, farm.db.models; print('\\n'.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "sqlalchemy" in server_modules_in(done.stdout.split())


def test_farm_template_runs_on_a_client_only_install(tmp_path: Path) -> None:
    """`farm template` writes a template from a spec on a workstation without the server's
    dependencies (a TD converts a spec before submitting it)."""
    from tests.factories import job_spec

    spec = tmp_path / "job.json"
    spec.write_text(job_spec(1, 7, grid=(2, 2)).model_dump_json())
    out = tmp_path / "job.yaml"
    code = (
        f"import sys\nfor name in {list(SERVER_ONLY)!r}:\n    sys.modules[name] = None\n"
        "import studio_client.cli\n"
        f"rc = studio_client.cli.main(['template', {str(spec)!r}, '-o', {str(out)!r}])\n"
        "loaded = [n for n, m in sys.modules.items() if m is not None]\n"
        "import json; print(json.dumps({'rc': rc, 'loaded': loaded}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["rc"] == 0
    assert server_modules_in(result["loaded"]) == []
    assert "command: delta-layer" in out.read_text()
