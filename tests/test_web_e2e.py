"""The `seqkit web` site in headless Chromium, loaded from a local HTTP server: it translates a
typed sentence as seqkit.runtime does (text, heat map), decodes the same token ids for greedy and
beam search on one thread and on all, refuses a tampered model file naming it, and the
`seqkit serve` page's "run in this browser" link opens the same model in the tab.

Needs node's npm dependencies (js/node_modules), selenium and Debian's chromium + chromium-driver
(.ci/run installs them where it can); otherwise the tests skip and say which piece is missing.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterator

import pytest
from js_support import require_node

require_node()

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402
from test_export import SRC_LINES, export_tiny  # noqa: E402
from test_serve_e2e import browser, check_heatmap, start_server, stop_server  # noqa: E402, F401  (browser: a fixture)

from seqkit.runtime import load_model  # noqa: E402
from seqkit.web import preview_server, write_site  # noqa: E402

LINES = [*SRC_LINES, "ein unbekanntes wort .", "", " ".join(SRC_LINES)]
TRANSLATE = ("const [lines, opts, done] = arguments;"
             "window.seqkit.translate(lines, opts).then((r) => done(r.map((x) => x.tokens)))"
             ".catch((e) => done('failed: ' + e.message));")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    search = {"max_len_offset": 5, "beam_size": 3}
    return export_tiny(tmp_path_factory.mktemp("web-e2e"), enc="lstm", dec="lstm", attention="luong-general",
                       search=search)[1]


def serve_dir(site: Path) -> tuple[str, object]:
    server = preview_server(site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/", server


@pytest.fixture(scope="module")
def site_url(model_dir, tmp_path_factory) -> Iterator[str]:
    url, server = serve_dir(write_site(model_dir, tmp_path_factory.mktemp("site") / "site"))
    try:
        yield url
    finally:
        server.shutdown()


def wait_loaded(driver, timeout: float = 60) -> str:
    """The page's load outcome: "ready" or "error" (body data-state)."""
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script("return document.body.dataset.state"))
    return driver.execute_script("return document.body.dataset.state")


def type_and_run(driver, sentence: str, strategy: str) -> None:
    Select(driver.find_element(By.ID, "strategy")).select_by_value(strategy)
    box = driver.find_element(By.ID, "source")
    box.clear()
    box.send_keys(sentence)
    driver.find_element(By.ID, "run").click()
    WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "output").get_attribute("data-state") in ("done", "error"))
    assert driver.find_element(By.ID, "error").text == ""


def test_site_translates_a_typed_sentence(site_url, browser, model_dir, tmp_path):
    browser.get(site_url)
    assert wait_loaded(browser) == "ready", browser.find_element(By.ID, "error").text
    assert "runs in this browser" in browser.find_element(By.ID, "model-name").text
    sentence = SRC_LINES[4]
    type_and_run(browser, sentence, "beam")
    shown = browser.find_element(By.ID, "output").text
    want = load_model(model_dir, threads=1).translator(beam_size=3).translate([sentence], return_attention=True)[0]
    assert shown == want.text and shown
    check_heatmap(browser, sentence, want)
    browser.save_screenshot(str(tmp_path / "site.png"))
    assert (tmp_path / "site.png").stat().st_size > 1000


@pytest.mark.parametrize("threads", sorted({1, min(os.cpu_count() or 1, 4)}))
def test_site_decodes_the_same_ids_as_the_python_runtime(site_url, browser, model_dir, threads):
    browser.get(f"{site_url}?threads={threads}")
    assert wait_loaded(browser) == "ready"
    # All threads need the cross-origin isolation headers that preview_server sends.
    assert browser.execute_script("return window.seqkit.model.threads") == threads
    browser.set_script_timeout(120)
    model = load_model(model_dir, threads=1)
    for opts in ({"strategy": "greedy"}, {"strategy": "beam", "beam_size": 5},
                 {"strategy": "beam", "beam_size": 4, "n_best": 2, "min_len": 3, "batch_size": 3}):
        want = [r.tokens for r in model.translator(**opts).translate(LINES)]
        assert browser.execute_async_script(TRANSLATE, LINES, opts) == want, opts


def test_a_tampered_model_file_is_refused_in_the_browser(model_dir, browser, tmp_path):
    site = write_site(model_dir, tmp_path / "site")
    target = site / "model" / "encoder.onnx"
    data = bytearray(target.read_bytes())
    data[-10] ^= 0x20
    target.write_bytes(bytes(data))
    url, server = serve_dir(site)
    try:
        browser.get(url)
        assert wait_loaded(browser) == "error"
        assert browser.find_element(By.ID, "error").text == (
            "error: model/encoder.onnx: sha256 mismatch with manifest.json; the file is corrupt or was modified")
        assert not browser.find_element(By.ID, "run").is_enabled()
    finally:
        server.shutdown()


def test_serve_page_offers_run_in_this_browser(model_dir, browser, tmp_path):
    proc, url = start_server(model_dir, tmp_path / "serve.log")
    try:
        browser.get(url + "/")
        link = WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "in-browser") if
                                                d.find_element(By.ID, "in-browser").is_displayed() else None)
        assert link.text == "run in this browser"
        link.click()
        assert wait_loaded(browser) == "ready", browser.find_element(By.ID, "error").text
        assert browser.current_url == url + "/browser/"
        type_and_run(browser, SRC_LINES[0], "greedy")
        want = load_model(model_dir, threads=1).translator(strategy="greedy").translate([SRC_LINES[0]])[0]
        assert browser.find_element(By.ID, "output").text == want.text
    finally:
        stop_server(proc)


def test_serve_page_hides_the_link_without_the_js_runtime(model_dir, browser, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQKIT_JS_DIR", str(tmp_path / "no-js"))  # inherited by the server process
    proc, url = start_server(model_dir, tmp_path / "serve.log")
    try:
        browser.get(url + "/")
        # init() sets the link's visibility before it enables Run
        WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "run").is_enabled())
        assert not browser.find_element(By.ID, "in-browser").is_displayed()
    finally:
        stop_server(proc)
