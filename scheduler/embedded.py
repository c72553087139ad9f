"""One process that runs the whole farm: the API, the dispatcher loop and (local) Ray.

How the API process and the scheduler relate: ``farm server`` builds one :class:`FarmContext`
(database + blob store), starts or joins Ray, starts the :class:`Dispatcher` in a background
thread and serves the FastAPI app with uvicorn. Both halves talk only through the database, so
they can be split into two processes later without changing either. With ``--ray-address`` the
dispatcher drives an existing cluster instead of a local Ray.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

import uvicorn

from farm.api.app import create_app
from farm.api.context import FarmContext
from farm.db.pools import pool_shapes
from farm.errors import Unavailable
from farm.settings import Settings
from scheduler.dispatch.dispatcher import Dispatcher
from scheduler.runtime import RayRuntime, start_ray

log = logging.getLogger("scheduler.embedded")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class EmbeddedFarm:
    """The farm in this process. Use as a context manager; ``url`` is the API's address.

    Args:
        settings: where the database, blobs and outputs live, and which Ray to use.
        host, port: where the API listens; port 0 picks a free one.
        num_cpus: CPUs of the local Ray (default: all of this machine's).
    """

    settings: Settings
    host: str = "127.0.0.1"
    port: int = 0
    num_cpus: int | None = None
    object_store_memory: int | None = None
    context: FarmContext = field(init=False)
    runtime: RayRuntime = field(init=False)
    dispatcher: Dispatcher = field(init=False)
    _server: uvicorn.Server | None = field(default=None, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, *, serve: bool = True) -> EmbeddedFarm:
        self.context = FarmContext.from_settings(self.settings)
        with self.context.db.session() as session:
            pools = pool_shapes(session)
        self.runtime = start_ray(
            address=self.settings.ray_address,
            pools=pools,
            num_cpus=self.num_cpus,
            object_store_memory=self.object_store_memory,
        )
        self.dispatcher = Dispatcher(
            self.context.db,
            self.context.store,
            self.context.output_root,
            max_attempts=self.settings.tile_max_attempts,
        )
        self.dispatcher.start()
        if serve:
            self._serve()
        return self

    def _serve(self) -> None:
        if self.port == 0:
            self.port = free_port(self.host)
        config = uvicorn.Config(
            create_app(self.context), host=self.host, port=self.port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="farm-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise Unavailable(
                    f"the API did not start on {self.url}: is another program on that port?"
                )
            time.sleep(0.05)

    def serve_forever(self) -> None:
        """Block until Ctrl-C (the ``farm server`` foreground mode)."""
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            pass

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.dispatcher.stop()
        if self.runtime.started_locally:
            import ray

            ray.shutdown()
        self.context.db.dispose()

    def __enter__(self) -> EmbeddedFarm:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()
