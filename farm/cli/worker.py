"""``farm worker``: join this machine to the farm's Ray cluster as a node of one pool."""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from farm.cli._console import console


def worker(
    address: Annotated[str, typer.Option(help="the Ray head, HOST:PORT (e.g. head:6379)")],
    pool: Annotated[str, typer.Option(help="the pool this node serves (from the pools file)")],
    num_cpus: Annotated[
        int | None,
        typer.Option("--num-cpus", min=1, help="cores to give the farm (default: the pool's)"),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", help="the cluster's Ray auth token, where it uses one"),
    ] = None,
    virtual: Annotated[
        bool,
        typer.Option(help="stand in for an accelerator node on CPU (tests, a laptop)"),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the ray start command and exit")
    ] = False,
) -> None:
    """Start a Ray node in POOL joined to ADDRESS; runs until stopped (Ctrl-C or SIGTERM)."""
    from farm.errors import InvalidSpec, Unavailable
    from farm.pool_config import load_farm_config
    from farm.settings import Settings
    from scheduler.worker import (
        detect_hardware,
        find_pool,
        node_resources,
        ray_start_command,
        ray_start_env,
    )

    host, colon, port = address.rpartition(":")
    if not (host and colon and port.isdigit() and 0 < int(port) < 65536):
        raise InvalidSpec(
            f"--address {address!r} is not HOST:PORT of the Ray head, e.g. head:6379",
            field="address",
        )
    config = load_farm_config(Settings().resolved_pools_file)
    spec = find_pool(config, pool)
    node = node_resources(spec, detect_hardware(), num_cpus=num_cpus, virtual=virtual)
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray_bin is None:
        raise Unavailable("the ray command is not installed: pip install 'delta-farm[server]'")
    argv = ray_start_command(node, address, ray_bin=ray_bin)
    for note in node.notes:
        console.print(f"[yellow]note:[/] {note}")
    env = ray_start_env(token_file)  # a missing token file is said before anything starts
    if dry_run:
        auth = [f"{k}={env[k]}" for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH") if token_file]
        console.print(shlex.join([*auth, *argv[:-1]]), soft_wrap=True, markup=False)
        return
    console.print(
        f"node of pool [bold]{spec.name}[/] joining {address}: {node.num_cpus} slots, "
        f"{node.memory_bytes / (1 << 30):.1f} GiB"
    )
    process = subprocess.Popen(argv, env=env)
    stopping = {"asked": False}

    def stop(*_: object) -> None:
        # ray start --block drains the node (its running tiles finish, or go back to pending
        # when RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S passes), stops it, and exits 1.
        stopping["asked"] = True
        process.terminate()

    signal.signal(signal.SIGTERM, stop)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        stop()
        code = process.wait()
    if stopping["asked"] and code in (0, 1, -signal.SIGTERM, 128 + signal.SIGTERM):
        # Ray 2.60's ray start --block exits 1 after a drain it was asked for.
        console.print(f"node of pool {spec.name} stopped")
        return
    if code != 0:
        raise InvalidSpec(f"ray start exited with code {code}: see its output above")
