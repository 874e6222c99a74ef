"""The book build's own failures: one clear error each (the chapters themselves are
tested in test_notebooks.py)."""

import pytest

# papermill (dev extra): missing fails, never skips
from fuadnb import book, cli, notebooks


def test_book_outside_a_checkout_is_one_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["book", "--no-execute"]) == 2
    assert "no fuadnb checkout" in capsys.readouterr().err


def test_vendor_assets_without_npm_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(book.shutil, "which", lambda _: None)
    with pytest.raises(notebooks.BookError, match="npm, which is not installed"):
        book.vendor_assets(tmp_path)


def _fake_pages(monkeypatch, fail: str = ""):
    """`book.execute` replaced by a short sleep that records when each page ran."""
    import threading
    import time

    log, lock = [], threading.Lock()

    def execute(src, dst, params, *, progress=False, env=None):
        with lock:
            log.append(("start", src.stem, time.perf_counter(), progress, env))
        time.sleep(0.2)    # long enough that two pages overlap on a loaded machine
        with lock:
            log.append(("end", src.stem, time.perf_counter(), progress, env))
        return notebooks.Outcome(dst, src.stem != fail, 0.05, "Boom: failed")

    monkeypatch.setattr(book, "execute", execute)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    return log


def test_pages_run_two_at_once_each_after_the_runs_it_reuses(monkeypatch):
    root = notebooks.repo_root()
    log = _fake_pages(monkeypatch)
    book.execute_pages(root, {}, jobs=2, log=lambda _: None)
    pages = (*notebooks.CHAPTERS, *notebooks.PAGES)
    start = {name: t for kind, name, t, *_ in log if kind == "start"}
    end = {name: t for kind, name, t, *_ in log if kind == "end"}
    assert sorted(start) == sorted(end) == sorted(pages)      # each once
    for name, before in notebooks.AFTER.items():
        assert set(before) <= set(pages) and name in pages
        assert all(end[b] <= start[name] for b in before), name
    assert start["08_benchmark"] < end["01_contamination"]    # needs no data
    running = most = 0
    for kind, *_ in sorted(log, key=lambda e: e[2]):
        running += 1 if kind == "start" else -1
        most = max(most, running)
    assert most == 2
    threads = str(max(1, (book.os.cpu_count() or 1) // 2))
    assert {e[4]["OMP_NUM_THREADS"] for e in log} == {threads}
    assert not any(e[3] for e in log)          # no per-cell bars side by side


def test_one_job_runs_the_pages_in_order_each_after_what_it_reuses(monkeypatch):
    log = _fake_pages(monkeypatch)
    book.execute_pages(notebooks.repo_root(), {}, jobs=1, log=lambda _: None)
    started = [e[1] for e in log if e[0] == "start"]
    assert started == list(notebooks.ORDER)
    assert sorted(started) == sorted([*notebooks.CHAPTERS, *notebooks.PAGES])
    for name, before in notebooks.AFTER.items():   # ORDER itself respects AFTER
        assert all(started.index(b) < started.index(name) for b in before)
    assert all(e[3] and e[4] == {} for e in log)


def test_a_failed_page_stops_the_book_and_names_itself(monkeypatch):
    """Nothing is submitted once the scheduler has seen the failure. Both events
    are recorded on the scheduler's own thread (a page's "end" in the fake comes
    before its future completes, so comparing with it would race under load)."""
    import time

    log = _fake_pages(monkeypatch, fail="02_reverse_distillation")
    submitted, seen, book_wait = [], [], book.wait

    def watching_wait(futures, **kwargs):
        done, pending = book_wait(futures, **kwargs)
        if any(not f.result().ok for f in done):
            seen.append(time.perf_counter())
        return done, pending

    monkeypatch.setattr(book, "wait", watching_wait)
    with pytest.raises(notebooks.BookError, match="chapter 02_reverse_distillation "
                       "failed after 0 s: Boom: failed"):
        book.execute_pages(notebooks.repo_root(), {}, jobs=2,
                           log=lambda line: line.startswith("executing")
                           and submitted.append(time.perf_counter()))
    assert len(seen) == 1 and len(submitted) >= 2
    assert not [t for t in submitted if t > seen[0]]
    assert "03_memory_bank" not in {e[1] for e in log}
    with pytest.raises(notebooks.BookError, match="--jobs must be a whole number"):
        book.execute_pages(notebooks.repo_root(), {}, jobs=0)
