"""A grid beyond one machine: the points of a grid file run on a Dask cluster.

The coordinating process (this one) is `fuadnb.grid.run_grid` with a `runner`: it
reads the grid and its ``grid_results.csv``, skips the finished points, writes every
executed notebook and every row, in grid order, atomically, after every point, so the
guarantees are the local ones (a rerun resumes; one row per point; a failed point
is recorded and the others still run). A worker only executes one point's notebook
(`run_point`, in a kernel it starts) and sends back the `Outcome` and the executed
notebook's text.

Why Dask (``distributed``) and not Ray: a point is one coarse task (a notebook that
runs for minutes to hours) and needs no shared objects, actors or collective
communication, only "run this function somewhere and give me its result"; Dask does
that with a pure-Python, pip-installable package (a few MB; Ray's wheels are hundreds
of MB and for fewer platforms), the same ``Client`` talks to a `LocalCluster` (tests,
one big machine), to ``dask scheduler`` / ``dask worker`` started by hand, and to
dask-jobqueue's ``SLURMCluster``/``PBSCluster``/``SGECluster``/``LSFCluster``,
which submit the workers as batch jobs (each job one worker; give it one GPU with the
queue's own option, e.g. ``job_extra_directives=["--gres=gpu:1"]``), and
dask-cuda's ``LocalCUDACluster`` starts one worker per GPU of a machine.

Workers need the same checkout, environment and data at the same paths as the
coordinator (a shared filesystem, as on any SLURM/PBS cluster): they run the grid's
notebook from its path, its relative paths resolved in its folder, and train into its
``RUNS_ROOT``. Nothing else in fuadnb imports this module; ``distributed`` is the
optional extra ``distributed`` (``pip install -e '.[distributed]'``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from fuadnb import grid
from fuadnb.notebooks import BookError, Outcome, execute


def _distributed():
    """The ``distributed`` package, or one clear error naming the extra."""
    try:
        import distributed
    except ModuleNotFoundError as err:
        raise BookError("running a grid on a cluster needs Dask's distributed, which "
                        "is not installed; pip install -e '.[distributed]' (and "
                        "dask-jobqueue for SLURM/PBS)") from err
    return distributed


def run_point(notebook: str, parameters: dict[str, Any], name: str
              ) -> tuple[Outcome, str]:
    """On a worker: run `notebook` (a path that must exist there) with `parameters`
    in a local kernel, into a temporary file; its `Outcome` and the executed
    notebook's text ("" when none was written). Never raises for a failed point."""
    src = Path(notebook)
    with tempfile.TemporaryDirectory(prefix="fuadnb-point-") as tmp:
        dst = Path(tmp) / f"{name}.ipynb"
        if not src.is_file():
            return Outcome(dst, False, 0.0, f"FileNotFoundError: {src} is not on "
                           f"worker {socket.gethostname()}; workers need the "
                           "checkout at the coordinator's path (a shared "
                           "filesystem)"), ""
        outcome = execute(src, dst, parameters)
        return outcome, dst.read_text() if dst.is_file() else ""


def runner(client) -> grid.Runner:
    """A `fuadnb.grid.Runner` that runs each point on `client`'s cluster
    (`run_point`) and writes the executed notebook here, atomically. A lost worker
    or scheduler is the point's error, as a failed cell is."""
    def run(notebook: Path, dst: Path, parameters: dict[str, Any]) -> Outcome:
        start = time.perf_counter()
        try:
            future = client.submit(run_point, str(notebook), parameters, dst.stem,
                                   key=f"fuadnb-{dst.stem}-{uuid.uuid4().hex[:8]}",
                                   pure=False, retries=0)
            outcome, text = future.result()
        except Exception as err:   # KilledWorker, CommClosedError, ...: recorded
            return Outcome(dst, False, time.perf_counter() - start,
                           f"{type(err).__name__}: {err}")
        if text:
            part = dst.with_name(f".{dst.name}.part")
            part.write_text(text)
            os.replace(part, dst)
        return replace(outcome, notebook=dst)
    return run


@contextlib.contextmanager
def client(address: str, *, workers: int = 2) -> Iterator[Any]:
    """A Dask client: ``"local"`` starts a `LocalCluster` of `workers` worker
    processes, one thread each, whose kernels get cores // workers compute threads
    (``OMP_NUM_THREADS``, as ``--jobs`` does on one machine); any other value is a
    running scheduler's address (``tcp://host:8786``)."""
    distributed = _distributed()
    if address == "local":
        threads = os.environ.get("OMP_NUM_THREADS") or str(
            max(1, (os.cpu_count() or 1) // workers))
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                      processes=True, dashboard_address=None,
                                      env={"OMP_NUM_THREADS": threads}) as cluster, \
                distributed.Client(cluster) as c:
            yield c
        return
    try:
        c = distributed.Client(address, timeout="30s")
    except OSError as err:
        raise BookError(f"no Dask scheduler at {address} ({err}); start one with "
                        "`dask scheduler` (or a dask-jobqueue cluster) and pass its "
                        "address, or use --cluster local") from err
    with c:
        yield c


def slots(c) -> int:
    """Points run at once on `c`'s cluster: its worker threads now (at least 1)."""
    return max(1, sum(c.nthreads().values()))


def run_grid(grid_file: Path, out: Path, address: str, *, jobs: int | None = None,
             overrides: dict[str, Any] | None = None,
             log: Callable[[str], None] = print,
             resume: Path | None = None) -> pd.DataFrame:
    """`fuadnb.grid.run_grid` with every point executed on a Dask cluster.

    Args:
        address: ``"local"`` (a `LocalCluster` of `jobs` workers, default 2) or a
            scheduler's address.
        jobs: points in flight at once (default: the cluster's worker threads).
        resume: a committed table of the grid (`fuadnb.grid.run_grid`).
    """
    if jobs is not None and jobs < 1:
        raise BookError(f"jobs must be >= 1, got {jobs}")
    with client(address, workers=jobs or 2) as c:
        in_flight = jobs or slots(c)
        log(f"Dask cluster {c.scheduler.address}: {len(c.nthreads())} worker(s), "
            f"{in_flight} point(s) at once")
        return grid.run_grid(grid_file, out, jobs=in_flight, progress=False,
                             overrides=overrides, log=log, runner=runner(c),
                             resume=resume)
