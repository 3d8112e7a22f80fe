"""Each example report in headless Chromium at 1280x800: the answer card is fully visible, no horizontal scroll.

Needs Debian's ``chromium`` and ``chromium-driver`` packages (as ``tests/web/test_browser.py``); skipped without.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.report.conftest import Report

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
    pytest.skip("headless browser tests need Debian's chromium and chromium-driver", allow_module_level=True)

VIEWPORT = (1280, 800)  # the laptop window
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run")


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    width, height = VIEWPORT
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        yield browser
    finally:
        browser.quit()


def test_the_answer_card_fits_a_laptop_window(driver: WebDriver, example_reports: dict[str, Report]) -> None:
    for name, report in example_reports.items():
        driver.get(report.path.as_uri())
        box = driver.execute_script(
            "const a = document.getElementById('answer').getBoundingClientRect();"
            "const d = document.documentElement;"
            "return {left: a.left, right: a.right, top: a.top, bottom: a.bottom,"
            " first: document.body.firstElementChild.id,"
            " inner: [window.innerWidth, window.innerHeight], scroll: d.scrollWidth, client: d.clientWidth};"
        )
        assert box["inner"] == list(VIEWPORT), name
        assert box["first"] == "answer", name
        assert box["left"] >= 0 and box["right"] <= box["client"], (name, box)
        assert box["top"] >= 0 and box["bottom"] <= VIEWPORT[1], (name, box)
        assert box["scroll"] <= box["client"], (name, "the page scrolls sideways", box)
