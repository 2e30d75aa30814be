"""The HTML report in a real browser: headless Chromium, opened from a file URL with the network off.

Needs selenium (the ``dev`` extra) and Debian's ``chromium`` + ``chromium-driver`` (``.ci/run``
installs them); skipped, saying which is missing, where they are not available.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from report_records import RUN, add_examples, make_record, paper_like_records, write_run

from hashbench.report import build_report, write_report

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="Chromium and chromedriver are needed (Debian: apt-get install -y chromium chromium-driver)",
)
#: Screenshots are also copied here when set (e.g. to keep them as CI artifacts).
SCREENSHOT_DIR = os.environ.get("HASHBENCH_SCREENSHOT_DIR")


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("results")
    records = paper_like_records((0, 1))
    add_examples(root, records)
    failed = make_record(dataset="mscoco", defense="cgat", attack="tha", cell_id="coco-failed")
    failed.update(status="failed", error="attack stage failed: CUDA out of memory")
    manifest = {"run": RUN, "grid": "paper-like", "profile": "paper", "device": "cuda", "device_name": "NVIDIA H100",
                "git_commit": "cafebabe", "cells": len(records) + 1, "status": "failed", "wall_s": 321.5,
                "stages": {"executed": 40, "cached": 12}}
    write_run(root, records + [failed], manifest=manifest)
    (path,) = write_report(RUN, results_dir=root, out_dir=tmp_path_factory.mktemp("report"))
    return path, build_report(RUN, root)


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--host-resolver-rules=MAP * ~NOTFOUND"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def opened(browser, report_file):
    path, report = report_file
    browser.get(path.resolve().as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    return browser, report


def test_tables_and_figures_render_without_errors(opened, tmp_path_factory: pytest.TempPathFactory) -> None:
    driver, report = opened
    js = driver.execute_script
    assert js("return document.querySelectorAll('table.paper-table').length") == len(report.layouts)
    assert js("return [...document.querySelectorAll('table.paper-table')].every(t => t.offsetHeight > 40)")
    assert js("return document.querySelectorAll('table.board').length") == len(report.boards)
    # Figures: the scatter and one curve figure per group, each drawn with a real size.
    sizes = js("return [...document.querySelectorAll('figure.plot svg')].map(s => s.getBoundingClientRect().width)")
    assert len(sizes) == 1 + len(report.figure_attacks) and min(sizes) > 200
    assert js("return document.querySelectorAll('figure.plot svg path').length") > 100
    # Example images (data: URIs in CSS rules) decode, and nothing was fetched over a network.
    urls = js("return [...new Set([...document.querySelectorAll('.im')].map("
              "e => getComputedStyle(e).backgroundImage.slice(5, -2)))]")
    assert len(urls) > 20 and all(u.startswith("data:image/") for u in urls)
    widths = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "Promise.all(arguments[0].map(u => new Promise(ok => { const i = new Image();"
        " i.onload = () => ok(i.naturalWidth); i.onerror = () => ok(0); i.src = u; }))).then(done);", urls)
    assert min(widths) > 0
    fetched = js("return performance.getEntriesByType('resource').map(e => e.name)")
    assert not [u for u in fetched if not u.startswith("data:")]
    severe = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert severe == []  # no script errors, no CSP violations, no failed loads
    shots = tmp_path_factory.mktemp("screenshots")
    height = min(js("return document.body.scrollHeight"), 14000)
    driver.set_window_size(1400, height)
    assert driver.save_screenshot(str(shots / "report.png"))
    assert (shots / "report.png").stat().st_size > 50_000
    if SCREENSHOT_DIR:
        Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
        shutil.copy(shots / "report.png", Path(SCREENSHOT_DIR) / "report.png")
    driver.set_window_size(1400, 1000)


def test_sorting_toggles_and_query_switch_work(opened) -> None:
    driver, _ = opened
    js = driver.execute_script
    column = "[...document.querySelector('table.board').tBodies[0].rows].map(r => parseFloat(r.cells[5].dataset.v))"
    ranked = js(f"return {column}")
    assert ranked == sorted(ranked, reverse=True)  # ranked best first
    header = driver.find_elements("css selector", "table.board thead th")[5]
    driver.execute_script("arguments[0].click()", header)
    assert js(f"return {column}") == sorted(ranked)
    assert header.get_attribute("aria-sort") == "ascending"
    driver.execute_script("arguments[0].click()", header)
    assert js(f"return {column}") == sorted(ranked, reverse=True)
    # Hiding the papers' numbers.
    ref = "getComputedStyle(document.querySelector('.ref')).display"
    assert js(f"return {ref}") != "none"
    driver.execute_script("arguments[0].click()", driver.find_element("css selector", "input[data-hide=paper]"))
    assert js(f"return {ref}") == "none"
    driver.execute_script("arguments[0].click()", driver.find_element("css selector", "input[data-hide=paper]"))
    # Switching an example to its second query.
    example = "document.querySelector('.example')"
    assert js(f"return [...{example}.querySelectorAll('.query')].map(q => q.hidden)") == [False, True]
    driver.execute_script("arguments[0].click()", driver.find_element("css selector", ".example button[data-q='2']"))
    assert js(f"return [...{example}.querySelectorAll('.query')].map(q => q.hidden)") == [True, False]
