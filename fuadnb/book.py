"""Build the book: every chapter executed with papermill, then Jupyter Book.

* `build_book`: every chapter in `fuadnb.notebooks.CHAPTERS` (then the pages in
  `fuadnb.notebooks.PAGES`) from ``notebooks/``
  executed into ``book/chapters/`` (one parameter set, e.g. the ``demo`` profile;
  `jobs` at once, each page after those it reuses runs from,
  `fuadnb.notebooks.AFTER`), the
  offline browser assets copied into ``book/_vendor`` (`vendor_assets`), then
  ``jupyter-book build book/`` (Jupyter Book 1.x, ``execute_notebooks: off``: the book
  renders what papermill ran).
* `add_run_it_yourself`: every executed chapter gets, below its title, a note that
  links its parameterized source in ``notebooks/`` (not the executed copy, which the
  theme's download button serves) and gives the commands that run it with other
  parameters.

Nothing else in fuadnb imports this module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import nbformat

from fuadnb.experiment import check_parameters
from fuadnb.notebooks import (
    AFTER,
    CHAPTERS,
    ORDER,
    PAGES,
    BookError,
    check_names,
    check_types,
    declared_parameters,
    execute,
    kernel_threads,
    only_declared,
    repo_root,
    with_defaults,
)

# (npm package, files in it, the part of their path dropped, folder in book/_vendor):
# what the offline book serves itself instead of loading from CDNs
ASSETS = (
    ("requirejs", "require.js", "", ""),
    ("@jupyter-widgets/html-manager", "dist/*.*", "dist", "widgets"),
    ("mathjax", "es5/tex-mml-chtml.js", "es5", "mathjax"),
    ("mathjax", "es5/output/chtml/fonts/woff-v2/*.woff", "es5", "mathjax"),
)
# Loaded between require.js and the widget manager (_config.yml). The manager loads
# its icon fonts from the folder of its AMD module, which RequireJS would otherwise
# place at "@jupyter-widgets/html-manager/dist/" beside each page: point that module
# folder at the vendored copy, found from this script's own URL.
REQUIRE_PATHS = """\
require.config({paths: {"@jupyter-widgets/html-manager/dist":
  document.currentScript.src.replace(/\\/[^\\/]*$/, "")}});
"""

# the executed chapters' note on how to run their source (`add_run_it_yourself`)
RUN_IT_TAG = "run-it-yourself"
RUN_IT_YOURSELF = """\
:::{{admonition}} Run it yourself
:class: tip

This page is `notebooks/{name}.ipynb`
({{download}}`the source <../../notebooks/{name}.ipynb>`), executed by papermill with
the parameters printed below its `parameters` cell. The source runs top to bottom
as it is, at its default parameters: open it in JupyterLab (`make lab`), change the
cell tagged `parameters` and run every cell. Or, at the root of the checkout:

```bash
papermill notebooks/{name}.ipynb out.ipynb \\
    --cwd notebooks {example}
python -m fuadnb book {book_example}   # every chapter
```

(`--cwd notebooks`: the chapter's paths are relative to `notebooks/`. The download
button at the top of the page gives this executed copy, outputs included.)
:::
"""
EXAMPLES = (("CATEGORY", "gravel"), ("NOISE_RATIO", "0.1"))   # the first declared


def run_it_yourself(source: Path) -> str:
    """The Markdown of `add_run_it_yourself`'s note for the chapter `source` (a
    notebook in ``notebooks/``), its example parameter one the chapter declares."""
    declared = declared_parameters(source)
    name, value = next((n, v) for n, v in EXAMPLES if n in declared)
    return RUN_IT_YOURSELF.format(name=source.stem, example=f"-p {name} {value}",
                                  book_example=f"-p {name}={value}")


def add_run_it_yourself(executed: Path, source: Path) -> None:
    """Put the note of `run_it_yourself` in the executed chapter `executed`, right
    under its title (a first Markdown cell that holds more than its ``# `` title
    line is split after it); a note already there (the cell tagged
    ``run-it-yourself``) is replaced, so a rebuild without executing adds none."""
    nb = nbformat.read(executed, as_version=4)
    cells = [c for c in nb.cells if RUN_IT_TAG not in c.metadata.get("tags", [])]
    first = cells[0]
    title, _, rest = first.source.partition("\n")
    if first.cell_type == "markdown" and title.startswith("# ") and rest.strip():
        first.source = title        # the note right under the title: split the
        cells.insert(1, nbformat.v4.new_markdown_cell(rest.strip("\n")))  # rest off
    note = nbformat.v4.new_markdown_cell(run_it_yourself(source),
                                         metadata={"tags": [RUN_IT_TAG]})
    nb.cells = cells[:1] + [note] + cells[1:]
    nbformat.write(nb, executed)


def vendor_assets(root: Path, npm: str | None = None) -> Path:
    """Copy MathJax, RequireJS and the widget manager from ``node_modules`` (``npm
    ci`` first if they are missing) into ``book/_vendor``, so the HTML needs no CDN."""
    modules = root / "node_modules"
    if not all((modules / package).is_dir() for package, *_ in ASSETS):
        npm = npm or shutil.which("npm")
        if npm is None:
            raise BookError("the book's browser assets (MathJax, RequireJS, the widget "
                            "manager) come from npm, which is not installed; install "
                            "Node.js and npm (Debian: apt-get install npm), then retry")
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=root,
                              capture_output=True, text=True)
        if done.returncode:
            raise BookError(f"npm ci failed in {root}:\n{done.stderr[-2000:]}")
    out = root / "book" / "_vendor"
    for package, pattern, strip, dest in ASSETS:
        files = [f for f in sorted((modules / package).glob(pattern))
                 if f.suffix != ".map"]
        if not files:
            raise BookError(f"{modules / package}: no {pattern}; delete node_modules "
                            "and retry (npm ci)")
        for f in files:
            target = out / dest / f.relative_to(modules / package / strip)
            if not target.is_file() or target.stat().st_size != f.stat().st_size:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, target)
    paths = out / "widgets" / "require-paths.js"
    if not paths.is_file() or paths.read_text() != REQUIRE_PATHS:
        paths.write_text(REQUIRE_PATHS)
    return out


def jupyter_book(root: Path) -> Path:
    """``jupyter-book build book/`` (config at the root); returns the HTML index."""
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
           "build", "book/"]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    if done.returncode:
        raise BookError(f"jupyter-book build failed:\n{done.stdout[-3000:]}"
                        f"\n{done.stderr[-3000:]}")
    warnings = [line for line in done.stdout.splitlines() + done.stderr.splitlines()
                if "WARNING" in line]
    for line in warnings:
        print(line, file=sys.stderr)
    return root / "_build" / "html" / "index.html"


def preflight(root: Path, parameters: dict[str, Any]) -> None:
    """Refuse, before any kernel starts, a parameter no chapter declares (with a
    close match) and a value a chapter could not run with
    (`fuadnb.experiment.check_parameters`: names, paths, the learning-bias curve's
    interval against the run's steps)."""
    sources = [root / "notebooks" / f"{name}.ipynb" for name in (*CHAPTERS, *PAGES)]
    check_names(sources, parameters, "book -p")
    for src in sources:
        check_types(src, parameters, f"book -p (chapter {src.stem})")
        try:
            check_parameters(with_defaults(src, parameters), src.parent)
        except ValueError as err:
            raise BookError(f"chapter {src.stem}: {err}") from None


def execute_pages(root: Path, parameters: dict[str, Any], *, jobs: int = 2,
                  progress: bool = True, log: Callable[[str], None] = print) -> None:
    """Execute every chapter and page into ``book/chapters/``, `jobs` kernels at
    once: a free kernel takes the first page of `fuadnb.notebooks.ORDER` (the
    longest first) whose AFTER pages (those it reuses runs from) finished; each
    kernel gets cores // jobs compute threads
    (``OMP_NUM_THREADS``, unless set). On 2 CPU cores two single-threaded kernels
    train more per second than one with two threads, and a chapter's imports,
    plots and metrics leave a core idle. Per-cell progress bars with one job only.

    Raises:
        BookError: a page failed (no other starts after it; the running ones end).
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise BookError(f"--jobs must be a whole number >= 1, got {jobs!r}")
    env = kernel_threads(jobs)
    waiting, finished, failed = list(ORDER), set(), []
    running: dict[Any, str] = {}
    with ThreadPoolExecutor(jobs) as pool:
        while running or (waiting and not failed):
            while len(running) < jobs and not failed:
                ready = [n for n in waiting if set(AFTER.get(n, ())) <= finished]
                if not ready:
                    break
                name = ready[0]
                waiting.remove(name)
                src = root / "notebooks" / f"{name}.ipynb"
                params = only_declared(src, parameters)
                log(f"executing {src.relative_to(root)} with {params}")
                running[pool.submit(execute, src, root / "book" / "chapters" /
                                    f"{name}.ipynb", params,
                                    progress=progress and jobs == 1, env=env)] = name
            if not running:   # nothing can start: a page waits for one not listed
                raise BookError(f"pages {waiting} wait for pages that never run "
                                "(fuadnb.notebooks.AFTER)")
            for future in wait(running, return_when=FIRST_COMPLETED)[0]:
                name, outcome = running.pop(future), future.result()
                if outcome.ok:
                    finished.add(name)
                    log(f"  {name} done in {outcome.seconds:.0f} s")
                else:
                    failed.append((name, outcome))
    if failed:
        name, outcome = failed[0]
        raise BookError(f"chapter {name} failed after {outcome.seconds:.0f} s: "
                        f"{outcome.error} (executed notebook with the error: "
                        f"{outcome.notebook})")


def build_book(parameters: dict[str, Any], *, root: Path | None = None,
               execute_chapters: bool = True, progress: bool = True, jobs: int = 2,
               log: Callable[[str], None] = print) -> Path:
    """Execute every chapter with `parameters` (each gets those it declares) into
    ``book/chapters/`` (`execute_pages`, `jobs` at once), then build the HTML.
    Returns the path of ``index.html``.

    Every parameter is checked before the first kernel starts (`preflight`).

    Raises:
        BookError: a parameter no chapter declares or a bad value, a chapter
            failed (its executed notebook, with the error, is kept for inspection
            and the HTML is not built), or a tool is missing.
    """
    root = root or repo_root()
    if execute_chapters:
        preflight(root, parameters)
        execute_pages(root, parameters, jobs=jobs, progress=progress, log=log)
    missing = [n for n in (*CHAPTERS, *PAGES)
               if not (root / "book" / "chapters" / f"{n}.ipynb").is_file()]
    if missing:
        raise BookError(f"no executed chapters {missing} in book/chapters; build "
                        "without --no-execute first")
    for name in CHAPTERS:
        add_run_it_yourself(root / "book" / "chapters" / f"{name}.ipynb",
                            root / "notebooks" / f"{name}.ipynb")
    vendor_assets(root)
    return jupyter_book(root)
