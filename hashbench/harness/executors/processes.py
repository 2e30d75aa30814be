"""How ``--workers`` processes are started: from a fork server that has imported torch once.

Forking a process whose OpenMP threads are running is unsafe, and spawning each worker afresh
pays Python, torch and TorchDynamo start-up (≈ 4 s on a 2-core CPU) in every worker.  A fork
server imports those once, before any torch kernel has run, and forks each worker from that
clean state.  This module imports nothing heavy, so the CLI can start the server first thing and
let it import while the CLI itself imports torch and plans the grid.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext

#: imported by the fork server.  ``torch._dynamo`` is not used by hashbench, but the first
#: ``torch.optim`` optimizer of a process imports it (≈ 2 s); imported here it is paid once, not per worker.
PRELOAD = ["hashbench.harness.executors.parallel", "torch._dynamo"]


def worker_context() -> BaseContext:
    """The multiprocessing context of worker processes: the fork server where there is one, else spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


def start_worker_server() -> None:
    """Start the fork server now (it imports :data:`PRELOAD` in the background); a no-op without one."""
    if worker_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()
