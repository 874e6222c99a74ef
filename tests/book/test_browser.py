"""The built book, opened in headless Chromium (Debian `chromium`, driven by
playwright without downloading a browser): every page loads, shows its figures,
typesets its math, renders the explorer widget from saved state, and has no error
output. Screenshots go to the test's temp dir."""

import os
import shutil

import pytest

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PAGES = ("intro", "chapters/01_contamination", "chapters/02_reverse_distillation",
         "chapters/03_expert_distillation",
         "chapters/04_cross_domain_distillation",
         "chapters/05_funad_pseudo_labels",
         "chapters/06_llb_filtering", "chapters/07_benchmark", "running",
         "bibliography")
# Harmless and known: a redeclaration inside sphinx-book-theme's Thebe launcher; and
# the widget manager (html-manager 1.0.6) calling MathJax 2's `MathJax.Hub.Queue` to
# typeset widget labels, which MathJax 3 lacks (the labels show as plain text).
KNOWN_PAGE_ERRORS = ("THEBE_JS_URL", "reading 'Queue'")

pytestmark = pytest.mark.book


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; make tools installs it")
        pytest.skip("chromium is not installed (make tools)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _open(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, requests = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url)
    page.wait_for_load_state("load")
    page.wait_for_timeout(1500)   # MathJax and the widget manager render after load
    return page, errors, requests


@pytest.mark.parametrize("name", PAGES)
def test_page_loads_offline_with_figures_and_no_errors(smoke_book, browser, name,
                                                      tmp_path):
    html = smoke_book / "_build" / "html" / f"{name}.html"
    assert html.is_file()
    page, errors, requests = _open(browser, html.as_uri())
    page.screenshot(path=str(tmp_path / f"{name.replace('/', '_')}.png"),
                    full_page=True)
    body = page.inner_text("body")
    assert "Traceback" not in body and "Error" not in page.title()
    assert [e for e in errors if not any(k in e for k in KNOWN_PAGE_ERRORS)] == []
    remote = [u for u in requests if u.startswith(("http:", "https:"))]
    assert remote == [], "the offline book must not load anything from the network"
    if name.startswith("chapters/"):
        sizes = page.evaluate("[...document.querySelectorAll('.cell_output img')]"
                              ".map(i => [i.naturalWidth, i.getBoundingClientRect()"
                              ".width])")
        assert sizes and all(w > 0 and shown > 0 for w, shown in sizes), sizes
        assert page.locator("mjx-container").count() > 0, "math is not typeset"
        assert page.locator(".output.error, .output.traceback").count() == 0


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
