"""The built book, opened in headless Chromium (Debian `chromium`, driven by
playwright without downloading a browser): every page loads, shows its figures,
typesets its math, renders the explorer widget from saved state, and has no error
output. Screenshots go to the test's temp dir."""

import os
import shutil
from pathlib import Path

import pytest
from playwright import sync_api  # the dev extra: missing fails, never skips

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PAGES = ("intro", "chapters/01_contamination", "chapters/02_reverse_distillation",
         "chapters/03_memory_bank",
         "chapters/04_expert_distillation",
         "chapters/05_cross_domain_distillation",
         "chapters/06_funad_pseudo_labels",
         "chapters/07_llb_filtering", "chapters/08_benchmark", "running",
         "course", "chapters/own_method", "bibliography", "glossary", "api/index",
         "api/methods", "api/experiment", "api/data", "api/evaluate", "api/metrics",
         "api/grid")
# Known and harmless, each with why; anything else a page logs as an error fails.
KNOWN_PAGE_ERRORS = {
    # sphinx-book-theme's Thebe launcher declares this `let` in two scripts of a page
    "THEBE_JS_URL": "a redeclaration inside sphinx-book-theme's Thebe launcher",
    # html-manager 1.0.6 typesets widget labels with MathJax 2's `MathJax.Hub.Queue`,
    # which MathJax 3 lacks: the labels show as plain text
    "reading 'Queue'": "the widget manager calling MathJax 2's API on MathJax 3",
    # pydata-sphinx-theme reads the saved light/dark choice from localStorage; a fresh
    # browser profile has none, so it logs this and uses the default
    "invalid theme mode: . Resetting to auto": "no saved theme in a fresh profile",
}
VIEW_SCRIPT = 'script[type="application/vnd.jupyter.widget-view+json"]'

pytestmark = pytest.mark.book


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; make tools installs it")
        pytest.skip("chromium is not installed (make tools)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-background-networking",
            "--disable-component-update"])
        yield b
        b.close()


def _open(browser, url):
    """Open `url`; returns the page, its unexpected errors (page errors, console
    errors, failed requests, HTTP errors) and every requested URL."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, requests = [], []
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("console", lambda m: m.type == "error" and errors.append(
        f"console error: {m.text}"))
    page.on("request", lambda r: requests.append(r.url))
    page.on("requestfailed", lambda r: errors.append(
        f"failed request: {r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and errors.append(
        f"HTTP {r.status}: {r.url}"))
    page.goto(url)
    page.wait_for_load_state("load")
    page.wait_for_timeout(1500)   # MathJax and the widget manager render after load
    errors = [e for e in errors if not any(k in e for k in KNOWN_PAGE_ERRORS)]
    return page, errors, requests


def check_page(page, errors, requests) -> None:
    """Everything a reader would see broken: unexpected errors or failed requests,
    anything loaded from the network, raw (untypeset) math, a widget view that did
    not become a live widget, an image that did not load, error output."""
    assert errors == []
    remote = [u for u in requests if u.startswith(("http:", "https:"))]
    assert remote == [], "the offline book must not load anything from the network"
    body = page.inner_text("body")
    assert "Traceback" not in body and "Error" not in page.title()
    assert "$$" not in body and "\\begin{" not in body, "math is not typeset"
    views = page.locator(VIEW_SCRIPT).count()
    live = page.locator(".widget-subarea > .lm-Widget").count()
    assert live == views, f"{views} widget views, {live} rendered"
    broken = page.evaluate("[...document.images].filter(i => !i.complete || "
                           "i.naturalWidth === 0).map(i => i.src)")
    assert broken == [], broken
    assert page.locator(".output.error, .output.traceback").count() == 0


@pytest.mark.parametrize("name", PAGES)
def test_page_loads_offline_with_figures_and_no_errors(smoke_book, browser, name,
                                                      tmp_path):
    html = smoke_book / "_build" / "html" / f"{name}.html"
    assert html.is_file()
    page, errors, requests = _open(browser, html.as_uri())
    page.screenshot(path=str(tmp_path / f"{name.replace('/', '_')}.png"),
                    full_page=True)
    check_page(page, errors, requests)
    if name.startswith("chapters/"):
        sizes = page.evaluate("[...document.querySelectorAll('.cell_output img')]"
                              ".map(i => [i.naturalWidth, i.getBoundingClientRect()"
                              ".width])")
        assert sizes and all(w > 0 and shown > 0 for w, shown in sizes), sizes
    if name.startswith("chapters/0"):   # every chapter has math; the pages need not
        assert page.locator("mjx-container").count() > 0, "math is not typeset"


def test_the_check_sees_a_missing_asset(smoke_book, browser, tmp_path):
    """A page whose widget manager fonts, a figure and a script are missing fails
    the check (the same check every page passes above)."""
    html = smoke_book / "_build" / "html"
    copy = Path(shutil.copytree(html, tmp_path / "html"))
    for font in (copy / "_static" / "widgets").glob("*.woff2"):
        font.unlink()
    page, errors, requests = _open(browser, (copy / "chapters" /
                                             "02_reverse_distillation.html").as_uri())
    assert any("failed request" in e and ".woff2" in e for e in errors), errors
    with pytest.raises(AssertionError):
        check_page(page, errors, requests)
    planted = copy / "planted.html"
    planted.write_text('<html><body><p>$$x^2$$</p><img src="missing.png">'
                       '<script src="missing.js"></script></body></html>')
    page, errors, requests = _open(browser, planted.as_uri())
    assert len([e for e in errors if "failed request" in e]) == 2, errors
    with pytest.raises(AssertionError, match="math is not typeset"):
        check_page(page, [], requests)


def test_explorer_works_without_a_kernel(smoke_book, browser):
    html = smoke_book / "_build" / "html" / "chapters" / "02_reverse_distillation.html"
    page, _, _ = _open(browser, html.as_uri())
    handle = page.locator(".widget-slider .noUi-handle").first
    assert handle.is_visible()
    first = page.locator(".widget-html b").first.inner_text()
    handle.focus()
    handle.press("ArrowRight")   # the jslink moves the stack in the browser
    page.wait_for_timeout(300)
    second = page.locator(".widget-html b").first.inner_text()
    assert second != first and page.locator(".widget-readout").first.inner_text() == "1"
    image = page.locator(".widget-image:visible").first
    assert image.bounding_box()["width"] > 100


@pytest.mark.parametrize("name", ["chapters/02_reverse_distillation",
                                  "chapters/08_benchmark"])
def test_a_solution_is_hidden_until_clicked(smoke_book, browser, name):
    """sphinx-exercise's solutions with ``:class: dropdown`` (sphinx-togglebutton):
    folded on load, shown by a click on their toggle button, with their glued
    numbers, and no error or failed request on the page."""
    html = smoke_book / "_build" / "html" / f"{name}.html"
    page, errors, requests = _open(browser, html.as_uri())
    check_page(page, errors, requests)
    exercises = page.locator("div.exercise.admonition")
    solutions = page.locator("div.solution.dropdown.admonition")
    assert exercises.count() >= 3 and solutions.count() == exercises.count()
    for k in range(solutions.count()):
        solution = solutions.nth(k)
        body = solution.locator("section").first
        solution.scroll_into_view_if_needed()
        assert solution.locator(".admonition-title").is_visible()
        assert not body.is_visible(), f"solution {k} is shown before it is clicked"
        # the toggle button, not the title's link to the exercise
        solution.locator("button.toggle-button").click()
        page.wait_for_timeout(300)
        assert body.is_visible(), f"a click does not show solution {k}"
        assert body.locator(".pasted-text").count() > 0, "its numbers are not glued"
    assert errors == []
