"""Execute one notebook with papermill: the executor that `fuadnb.book` (the chapters)
and `fuadnb.grid` (batch grids) share.

The only module that imports papermill; nothing in fuadnb imports this one but
`book` and `grid`.

* where the chapters are: `repo_root` (the checkout), `CHAPTERS` (the book's order)
  and `PAGES` (the other executed pages);
* what a notebook takes: `declared_parameters`, `only_declared`;
* running one: `execute` (returns an `Outcome`, never raises for a failed cell), with
  environment variables for its kernel alone (`execute`'s ``env``: a grid gives each
  concurrent kernel its own GPU);
* what it recorded: `recorded_row` (the row a chapter output with `fuadnb.nb.record`).
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import functools
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import papermill as pm
from jupyter_client import AsyncKernelManager

from fuadnb.nb import RESULT_MIME
from fuadnb.utils import ToolError

CHAPTERS = ("01_contamination", "02_reverse_distillation", "03_memory_bank",
            "04_expert_distillation", "05_cross_domain_distillation",
            "06_funad_pseudo_labels", "07_llb_filtering", "08_benchmark")
# other executed pages of the book (notebooks/<name>.ipynb -> book/chapters/), run
# after the chapters (own_method reuses chapter 02's cached RD runs)
PAGES = ("own_method",)
# What each executed page needs another's run for, when the book runs several at
# once (`fuadnb.book`): chapter 01 generates the synthetic data on first use, 03 and
# own_method reuse chapter 02's cached RD runs, 06 and 07 chapter 05's RD at 128 px.
# A page starts once these finished (08 reads committed tables: at once); a run two
# pages computed at the same time would still be cached once (`fuadnb.runs`).
AFTER: dict[str, tuple[str, ...]] = {
    "02_reverse_distillation": ("01_contamination",),
    "03_memory_bank": ("02_reverse_distillation",),
    "04_expert_distillation": ("01_contamination",),
    "05_cross_domain_distillation": ("01_contamination",),
    "06_funad_pseudo_labels": ("05_cross_domain_distillation",),
    "07_llb_filtering": ("05_cross_domain_distillation",),
    "own_method": ("02_reverse_distillation",),
}
# The order in which a free kernel takes the next page whose AFTER pages finished:
# the longest first, so that two kernels end together. Measured with the demo
# profile from a fresh clone on 2 CPU cores, one thread per kernel, two at once
# (2026-12-07, README), in seconds: 04 324, 02 281, 07 238, 05 150, own_method 77,
# 03 64, 06 59, 01 54 (it generates the data all others wait for), 08 22.
ORDER: tuple[str, ...] = (
    "01_contamination", "08_benchmark", "04_expert_distillation",
    "05_cross_domain_distillation", "02_reverse_distillation", "07_llb_filtering",
    "03_memory_bank", "own_method", "06_funad_pseudo_labels")


class BookError(ToolError):
    """The book or a grid cannot be run (a chapter failed, a tool is missing, a bad
    grid file)."""


@dataclass(frozen=True)
class Outcome:
    """One executed notebook: where it is, whether it ran, how long, what failed."""

    notebook: Path
    ok: bool
    seconds: float
    error: str = ""


def repo_root(start: Path | str = ".") -> Path:
    """The checkout holding ``notebooks/`` and ``book/`` (`start` or a parent)."""
    start = Path(start).resolve()
    for folder in (start, *start.parents):
        if (folder / "notebooks").is_dir() and (folder / "book" / "_toc.yml").is_file():
            return folder
    raise BookError(f"no fuadnb checkout at or above {start} (a folder with "
                    "notebooks/ and book/_toc.yml); run this from the repository")


def declared_parameters(notebook: Path) -> dict[str, dict]:
    """The names (and papermill's inferred types/defaults) of a notebook's
    ``parameters`` cell (read once per version of the file)."""
    st = Path(notebook).stat()
    return _inspect(os.path.abspath(notebook), st.st_mtime_ns, st.st_ctime_ns,
                    st.st_size)


@functools.lru_cache(maxsize=64)
def _inspect(path: str, *version: int) -> dict[str, dict]:
    return pm.inspect_notebook(path)


PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def kernel_pythonpath() -> str:
    """The ``PYTHONPATH`` the kernels get: the folder holding the fuadnb this process
    runs, first. A kernel starts in the notebook's folder, where ``import fuadnb``
    would otherwise find whatever package the environment installed (an editable
    install of another checkout), and a grid run from a clean worktree would record
    that checkout's code and commit."""
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if p and Path(p).resolve() != PACKAGE_ROOT]
    return os.pathsep.join([str(PACKAGE_ROOT), *rest])


def kernel_threads(jobs: int) -> dict[str, str]:
    """The environment that gives each of `jobs` kernels at once cores // jobs
    compute threads (``OMP_NUM_THREADS``, which torch reads at start); none with
    one job or when the caller set it (`fuadnb.grid`, `fuadnb.book`)."""
    if jobs == 1 or "OMP_NUM_THREADS" in os.environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // jobs))}


_RUNNING: set[int] = set()   # process ids of the kernels `execute` started
_RUNNING_LOCK = threading.Lock()
_STOPPING = threading.Event()   # set by `stopping`: a kernel starting now dies


def kernel_manager(env: dict[str, str]) -> type[AsyncKernelManager]:
    """nbclient's kernel manager class, whose kernels start with the environment
    `env` (instead of this process's ``os.environ``, which stays as it is) and are
    known to `stopping` while they run."""

    class KernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:
            await super().start_kernel(**({"env": env} | kw))
            self._fuadnb_pid = getattr(self.provisioner, "pid", None)
            if self._fuadnb_pid:
                with _RUNNING_LOCK:
                    _RUNNING.add(self._fuadnb_pid)
                    if _STOPPING.is_set():   # started while a grid was stopping
                        _kill(self._fuadnb_pid)

        async def shutdown_kernel(self, *args: Any, **kw: Any) -> None:
            with _RUNNING_LOCK:
                _RUNNING.discard(getattr(self, "_fuadnb_pid", None))
            await super().shutdown_kernel(*args, **kw)

    return KernelManager


def _kill(pid: int) -> None:
    """SIGKILL a kernel and what it started (a kernel leads its own process group
    when jupyter_client starts it in a new session; else only the kernel)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@contextlib.contextmanager
def stopping():
    """While inside: every kernel `execute` started is killed, and one that starts
    is killed at once (an interrupted grid: its points end now instead of running
    to the end; their `execute` calls return failed Outcomes). Kernels of this
    process only; other processes' grids are untouched."""
    _STOPPING.set()
    with _RUNNING_LOCK:
        pids = sorted(_RUNNING)
    for pid in pids:
        _kill(pid)
    try:
        yield
    finally:
        _STOPPING.clear()


def execute(src: Path, dst: Path, parameters: dict[str, Any], *,
            progress: bool = False, timeout: int | None = None,
            env: dict[str, str] | None = None) -> Outcome:
    """Run `src` with `parameters` into `dst`, in `src`'s folder (so the chapters'
    relative paths hold). A failed notebook is still written, with its error.

    The kernel is started in that folder (nbclient's ``resources``) instead of
    papermill's ``cwd``, which changes this process's working directory and so
    cannot run in several threads at once; it imports this process's fuadnb
    (`kernel_pythonpath`). `env`: variables set for this kernel only, e.g. its
    ``CUDA_VISIBLE_DEVICES``; this process's environment, shared by its threads, is
    left as it is (`kernel_manager`).
    """
    src, dst = Path(src).resolve(), Path(dst).resolve()
    dst.parent.mkdir(parents=True, exist_ok=True)
    kernel_env = os.environ | {"PYTHONPATH": kernel_pythonpath()} | (env or {})
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(src), str(dst), parameters=parameters,
                            resources={"metadata": {"path": str(src.parent)}},
                            kernel_name="python3", progress_bar=progress,
                            log_output=False, execution_timeout=timeout,
                            kernel_manager_class=kernel_manager(kernel_env))
    except pm.PapermillExecutionError as err:
        return Outcome(dst, False, time.perf_counter() - start,
                       f"{err.ename}: {err.evalue}")
    except Exception as err:   # a kernel that died, a bad notebook: recorded
        return Outcome(dst, False, time.perf_counter() - start,
                       f"{type(err).__name__}: {err}")
    return Outcome(dst, True, time.perf_counter() - start)


def with_defaults(notebook: Path, parameters: dict[str, Any]) -> dict[str, Any]:
    """Every parameter `notebook` declares, at its default unless `parameters`
    gives it (what its kernel will see; defaults that are not literals are left
    out)."""
    found = {}
    for name, info in declared_parameters(notebook).items():
        try:
            found[name] = ast.literal_eval(info.get("default", ""))
        except (ValueError, SyntaxError):
            continue
    return found | only_declared(notebook, parameters)


def check_names(notebooks: list[Path], parameters: dict[str, Any], what: str
                ) -> None:
    """Refuse parameters that none of `notebooks` declares (papermill would drop
    them silently and the run would use its defaults): one BookError naming
    them, a close match and the parameters the notebooks do declare."""
    declared = sorted(set().union(*(declared_parameters(n) for n in notebooks)))
    unknown = [k for k in parameters if k not in declared]
    if unknown:
        hints = [f"{k} (did you mean {close[0]}?)" if (
            close := difflib.get_close_matches(k, declared, n=1)) else k
            for k in unknown]
        raise BookError(f"{what}: no parameter(s) {', '.join(hints)}; the "
                        f"declared ones are {', '.join(declared)}")


KINDS = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def check_types(notebook: Path, parameters: dict[str, Any], where: str) -> None:
    """Each of `parameters` that `notebook` declares, of its declared type
    (papermill would inject a float into an int parameter, or a list into a text
    one); one BookError naming `where` and the parameter."""
    declared = declared_parameters(notebook)
    for name, value in parameters.items():
        ok = KINDS.get(declared.get(name, {}).get("inferred_type_name", ""))
        if ok and (not isinstance(value, ok) or (
                isinstance(value, bool) and bool not in ok)):
            kind = declared[name]["inferred_type_name"]
            raise BookError(f"{where}: parameter {name}={value!r} must be {kind} (as "
                            f"declared in {notebook.name})")


def only_declared(notebook: Path, parameters: dict[str, Any]) -> dict[str, Any]:
    """`parameters` restricted to those `notebook` declares (papermill would inject
    the others as stray variables)."""
    names = declared_parameters(notebook)
    return {k: v for k, v in parameters.items() if k in names}


def recorded_row(notebook: Path) -> dict[str, Any]:
    """The results row a chapter output with `fuadnb.nb.record`, or {} if none."""
    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if RESULT_MIME in out.get("data", {}):
                return dict(out["data"][RESULT_MIME])
    return {}
