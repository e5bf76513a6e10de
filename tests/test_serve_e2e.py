"""End to end: `seqkit serve` on loopback, in an interpreter where importing torch (or any
training extra) fails, driven through its web page by headless Chromium: type a sentence,
press Run, read back the translation and the attention heat map.

Needs the serve extra, selenium, and Debian's chromium + chromium-driver (.ci/run installs them
where it can); otherwise the tests skip and say which piece is missing.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[serve]'")
pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install -e '.[serve]'")
pytest.importorskip("selenium", reason="selenium is not installed: pip install -e '.[test]'")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("headless browser test needs Debian's chromium and chromium-driver "
                "(apt-get install chromium chromium-driver); not found on PATH", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402
from test_export import SRC_LINES, export_tiny  # noqa: E402  (tests/ is on sys.path)
from test_runtime import TRAINING_ONLY  # noqa: E402

from seqkit.runtime import load_model  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`seqkit serve MODEL_DIR` on a free loopback port, without torch; waits for /healthz."""
    block = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in TRAINING_ONLY)
    port = free_port()
    argv = ["seqkit", "serve", str(model_dir), "--port", str(port), "--threads", "1", "--log-level", "warning"]
    code = block + f"sys.argv = {argv!r}\nfrom seqkit.cli import main\nmain()\n"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as reply:
                if json.load(reply)["status"] == "ok":
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"seqkit serve did not come up:\n{log.read_text()}")
        time.sleep(0.2)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    search = {"max_len_offset": 5, "beam_size": 3, "min_len": 1}
    return export_tiny(tmp_path_factory.mktemp("e2e"), enc="gru", dec="gru", attention="luong-general", search=search)[1]


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory) -> Iterator[str]:
    proc, url = start_server(model_dir, tmp_path_factory.mktemp("e2e-log") / "serve.log")
    try:
        yield url
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(arg)
    # An explicit driver path: selenium must not try to download one (no network here).
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def check_heatmap(browser, sentence: str, result) -> None:
    """The page's heat map: one row per target token (+ eos), one column per source word (+ eos),
    cell titles ending in the weight that seqkit.runtime computed."""
    heads = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#attention thead th")][1:]
    rows = browser.find_elements(By.CSS_SELECTOR, "#attention tbody tr")
    assert heads == sentence.split() + ["</s>"]
    assert len(rows) == len(result.tokens) + 1 == result.attention.shape[0]
    assert all(len(r.find_elements(By.TAG_NAME, "td")) == len(heads) for r in rows)
    first_cell = rows[0].find_element(By.TAG_NAME, "td").get_attribute("title")
    assert first_cell.endswith(f"{result.attention[0, 0]:.3f}")


def test_page_translates_a_typed_sentence(server, browser, model_dir, tmp_path):
    sentence = SRC_LINES[4]
    browser.get(server + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.find_element(By.ID, "run").is_enabled())
    assert "translation" in browser.find_element(By.ID, "model-name").text
    Select(browser.find_element(By.ID, "strategy")).select_by_value("greedy")
    box = browser.find_element(By.ID, "source")
    box.clear()
    box.send_keys(sentence)
    browser.find_element(By.ID, "run").click()
    wait.until(lambda d: d.find_element(By.ID, "output").get_attribute("data-state") in ("done", "error"))
    assert browser.find_element(By.ID, "error").text == ""
    shown = browser.find_element(By.ID, "output").text
    result = load_model(model_dir, threads=1).translator(strategy="greedy").translate([sentence], return_attention=True)[0]
    assert shown == result.text and shown
    check_heatmap(browser, sentence, result)
    browser.save_screenshot(str(tmp_path / "page.png"))
    assert (tmp_path / "page.png").stat().st_size > 1000


def test_page_shows_api_errors(server, browser):
    browser.get(server + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.find_element(By.ID, "run").is_enabled())
    box = browser.find_element(By.ID, "source")
    box.clear()
    box.send_keys("x" * 2001)  # over the default max_chars
    browser.find_element(By.ID, "run").click()
    wait.until(lambda d: d.find_element(By.ID, "output").get_attribute("data-state") == "error")
    assert browser.find_element(By.ID, "error").text.startswith("text_too_long: texts[0]: 2001 characters")


def test_server_process_has_no_torch(server):
    """The served model decodes in a process where `import torch` fails (see start_server)."""
    request = urllib.request.Request(server + "/v1/translate", data=json.dumps({"texts": SRC_LINES[:2]}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert len(json.load(reply)["translations"]) == 2


def test_page_generates_with_a_language_model(browser, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e-lm")
    _, lm_dir = export_tiny(root, task="lm", dec="gru")
    proc, url = start_server(lm_dir, root / "serve.log")
    try:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: d.find_element(By.ID, "run").is_enabled())
        assert not browser.find_element(By.ID, "strategy").is_displayed()  # translate-only controls hidden
        for field, value in (("source", "all:"), ("max-tokens", "15"), ("seed", "4")):
            box = browser.find_element(By.ID, field)
            box.clear()
            box.send_keys(value)
        browser.find_element(By.ID, "run").click()
        wait.until(lambda d: d.find_element(By.ID, "output").get_attribute("data-state") in ("done", "error"))
        assert browser.find_element(By.ID, "error").text == ""
        want = load_model(lm_dir, threads=1).generate("all:", max_tokens=15, temperature=0.8, seed=4)
        # textContent: the exact text the page received (newlines included).
        assert browser.find_element(By.ID, "output").get_attribute("textContent") == want
    finally:
        stop_server(proc)
