"""End to end in headless Chromium (Selenium): fill the form, read the numbers shown, compare with the CLI's JSON.

Needs Debian's ``chromium`` and ``chromium-driver`` packages (``.ci/run`` installs them); skipped without them.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rainier.web.evaluate import SEARCH_TOP
from tests.web.conftest import cli_args, cli_error, cli_json, plan_text

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
    pytest.skip(
        "headless browser tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

WAIT_S = 20.0
HF_CONFIG = Path(__file__).resolve().parents[1] / "workload" / "data" / "Meta-Llama-3-70B.json"
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # tests run as root in CI containers
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory, downloads: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(WAIT_S)
    try:
        yield browser
    finally:
        browser.quit()


def _open(driver: WebDriver, base_url: str) -> None:
    driver.get(base_url + "/")
    ready = WebDriverWait(driver, WAIT_S)
    ready.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")


def _set(driver: WebDriver, field: str, value: str) -> None:
    element = driver.find_element(By.ID, f"{field.replace('_', '-')}-input")
    if element.tag_name == "textarea":  # typing a whole config.json key by key is slow: paste it
        driver.execute_script("arguments[0].value = arguments[1]", element, value)
        return
    element.clear()
    element.send_keys(value)


def _fill(driver: WebDriver, fields: dict[str, str]) -> None:
    """Fill the form as a user would: choose the model and cluster kinds, then type every field."""
    driver.find_element(By.ID, "model-source-config" if "config" in fields else "model-source-catalog").click()
    driver.find_element(By.ID, "cluster-source-named" if "cluster" in fields else "cluster-source-build").click()
    for field in ("model", "config", "cluster", "accelerator", "count", "plan", "gbs", "seq_len"):
        element = driver.find_element(By.ID, f"{field.replace('_', '-')}-input")
        if element.is_displayed() and element.is_enabled():
            _set(driver, field, fields.get(field, ""))


def _answer(driver: WebDriver, action: str = "run") -> str:
    """Press a button and wait for the page to show the answer to the current fields; the results' state."""
    before = int(driver.find_element(By.ID, "results").get_attribute("data-runs") or "0")
    driver.find_element(By.ID, action).click()

    def answered(d: WebDriver) -> str | bool:
        results = d.find_element(By.ID, "results")
        state = str(results.get_attribute("data-state"))
        return int(results.get_attribute("data-runs") or "0") > before and state in ("ok", "error") and state

    try:
        return str(WebDriverWait(driver, WAIT_S).until(answered))
    except TimeoutException:
        pytest.fail(f"no answer shown; form error: {driver.find_element(By.ID, 'form-error').text!r}")


def _text(driver: WebDriver, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def _assert_shown(shown: str, value: float) -> None:
    """``shown`` (e.g. ``1,234``, ``3.632 s``, ``41.5 %``) is ``value`` rounded to the digits displayed."""
    number = re.sub(r"[^0-9.eE+-]", "", shown.replace(",", ""))
    decimals = len(number.split(".")[1]) if "." in number else 0
    assert abs(float(number) - value) <= 0.5 * 10**-decimals * (1 + 1e-9), (shown, value)


def _assert_headline(driver: WebDriver, expected: dict[str, Any]) -> None:
    _assert_shown(_text(driver, "step-time"), expected["step_time_s"])
    _assert_shown(_text(driver, "mfu"), expected["mfu"] * 100)
    _assert_shown(_text(driver, "tokens-per-s"), expected["tokens_per_s"])
    _assert_shown(_text(driver, "tokens-per-s-per-device"), expected["tokens_per_s_per_device"])
    _assert_shown(_text(driver, "memory"), expected["memory_bytes"]["total"] / 2**30)
    _assert_shown(_text(driver, "devices"), expected["num_devices"])
    assert _text(driver, "plan") == plan_text(expected["plan"])
    assert float(str(driver.find_element(By.ID, "step-time").get_attribute("data-value"))) == expected["step_time_s"]
    assert driver.find_element(By.ID, "breakdown-plot").find_elements(By.CSS_SELECTOR, ".main-svg")  # plotted


@pytest.mark.parametrize(
    "fields",
    [
        {"model": "llama-3-8b", "accelerator": "h100-sxm", "count": "64", "plan": "tp=8,pp=1,mbs=1,gbs=256"},
        {"model": "llama-3-70b", "cluster": "rainier-trn2-500k", "plan": "tp=4,pp=8,gbs=15624", "seq_len": "4096"},
    ],
)
def test_form_shows_the_cli_numbers(driver: WebDriver, base_url: str, fields: dict[str, str]) -> None:
    _open(driver, base_url)
    _fill(driver, fields)
    assert _answer(driver) == "ok"
    _assert_headline(driver, cli_json(cli_args(fields)))


def test_search_shows_the_cli_best_plan(driver: WebDriver, base_url: str) -> None:
    fields = {"model": "llama-3-8b", "accelerator": "h100-sxm", "count": "64", "plan": "search", "gbs": "64"}
    _open(driver, base_url)
    _fill(driver, fields)
    assert _answer(driver) == "ok"
    expected = cli_json(cli_args(fields))
    _assert_headline(driver, expected["top"][0])
    rows = driver.find_elements(By.CSS_SELECTOR, "#top-plans tbody tr")
    assert len(rows) == min(SEARCH_TOP, len(expected["top"]))
    assert rows[0].find_elements(By.TAG_NAME, "td")[1].text == plan_text(expected["top"][0]["plan"])


def test_pasted_config_and_live_update(driver: WebDriver, base_url: str, tmp_path: Path) -> None:
    text = HF_CONFIG.read_text()
    fields = {"config": text, "accelerator": "h100-sxm", "count": "64", "plan": "tp=8,pp=2,gbs=256"}
    _open(driver, base_url)
    _fill(driver, fields)
    assert _answer(driver) == "ok"
    folder = tmp_path / "pasted-config"
    folder.mkdir()
    (folder / "config.json").write_text(text)
    args = ["train", "estimate", "--model", str(folder / "config.json"), "--accelerator", "h100-sxm", "--count", "64"]
    _assert_headline(driver, cli_json([*args, "--plan", fields["plan"]]))
    # Live: once estimated, an edited field updates the numbers without pressing Estimate.
    _set(driver, "count", "128")
    driver.find_element(By.ID, "plan-input").click()  # leaving the field commits the change

    def updated(d: WebDriver) -> bool:
        results = d.find_element(By.ID, "results")
        sent = json.loads(results.get_attribute("data-fields") or "{}")
        return sent.get("count") == "128" and results.get_attribute("data-state") == "ok"

    WebDriverWait(driver, WAIT_S).until(updated)
    args[-1] = "128"
    _assert_headline(driver, cli_json([*args, "--plan", fields["plan"]]))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"model": "llama-3-8b", "accelerator": "h100-sxm", "count": "64", "plan": "tp=3,gbs=64"}, "plan"),
        ({"model": "llama-3-8", "accelerator": "h100-sxm", "count": "64", "plan": "tp=8,gbs=64"}, "model"),
        ({"model": "llama-3-8b", "accelerator": "h100-sxm", "count": "0", "plan": "tp=8,gbs=64"}, "count"),
    ],
)
def test_bad_input_shows_the_cli_message_beside_the_field(
    driver: WebDriver, base_url: str, fields: dict[str, str], field: str
) -> None:
    _open(driver, base_url)
    _fill(driver, fields)
    assert _answer(driver) == "error"
    assert _text(driver, f"{field}-error") == cli_error(cli_args(fields))
    assert driver.find_element(By.ID, f"{field}-input").get_attribute("aria-invalid") == "true"
    assert _text(driver, "form-error") == ""
    assert "Traceback" not in driver.page_source


def test_download_then_upload_a_scenario(driver: WebDriver, base_url: str, downloads: Path) -> None:
    fields = {"model": "llama-3-70b", "accelerator": "trn2", "count": "128", "plan": "search", "gbs": "512"}
    _open(driver, base_url)
    _fill(driver, fields)
    driver.find_element(By.ID, "download").click()
    target = downloads / "scenario.yaml"
    deadline = time.monotonic() + WAIT_S
    while not target.is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert target.is_file(), "the scenario was not downloaded"
    text = target.read_text()
    assert "kind: training" in text and "plan: search" in text and "gbs: 512" in text
    _open(driver, base_url)  # a fresh page, its defaults in the fields
    driver.find_element(By.ID, "upload-input").send_keys(str(target))
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.find_element(By.ID, "results").get_attribute("data-state") in ("ok", "error")
    )
    assert driver.find_element(By.ID, "model-input").get_attribute("value") == "llama-3-70b"
    assert driver.find_element(By.ID, "gbs-input").get_attribute("value") == "512"
    _assert_headline(driver, cli_json(cli_args(fields))["top"][0])


def test_malformed_upload_shows_one_line(driver: WebDriver, base_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: training\nmodel: [llama\n")
    _open(driver, base_url)
    driver.find_element(By.ID, "upload-input").send_keys(str(bad))
    WebDriverWait(driver, WAIT_S).until(lambda d: _text(d, "scenario-error") != "")
    message = _text(driver, "scenario-error")
    assert message.startswith("scenario: line 3: malformed YAML: ") and "\n" not in message


def test_report_opens_in_a_new_tab(driver: WebDriver, base_url: str) -> None:
    _open(driver, base_url)
    first = driver.current_window_handle
    driver.find_element(By.ID, "open-report").click()
    WebDriverWait(driver, WAIT_S).until(lambda d: len(d.window_handles) > 1)
    driver.switch_to.window(next(h for h in driver.window_handles if h != first))
    try:
        WebDriverWait(driver, WAIT_S).until(lambda d: d.find_elements(By.ID, "rainier-data"))
        embedded = str(driver.find_element(By.ID, "rainier-data").get_attribute("textContent"))
        data = json.loads(embedded)
        assert data["estimate"]["model"] == "llama-3-8b"
    finally:
        driver.close()
        driver.switch_to.window(first)


def _wait_answered(driver: WebDriver, results_id: str, before: int, wait_s: float = WAIT_S) -> str:
    def answered(d: WebDriver) -> str | bool:
        results = d.find_element(By.ID, results_id)
        state = str(results.get_attribute("data-state"))
        return int(results.get_attribute("data-runs") or "0") > before and state in ("ok", "error") and state

    return str(WebDriverWait(driver, wait_s).until(answered))


def _value(driver: WebDriver, element_id: str) -> float:
    return float(str(driver.find_element(By.ID, element_id).get_attribute("data-value")))


def _headline(shown: str) -> str:
    return shown.split(" (")[0]  # "42.35 (42.01–60)": the value before its p10-p90 interval


def test_fleet_and_serving_uploads_show_the_cli_numbers(driver: WebDriver, base_url: str, tmp_path: Path) -> None:
    """A fleet and a serving scenario file, uploaded, fill their tabs and show the CLI's numbers at 1280x800 without
    sideways scrolling; a bad field then greys the old answer and names the field."""
    from tests.web.test_questions import FLEET, SERVE

    fleet_file, serve_file = tmp_path / "fleet.yaml", tmp_path / "serve.yaml"
    fleet_file.write_text(json.dumps({"kind": "fleet", "version": 1, **FLEET}))  # JSON is YAML
    serve_file.write_text(json.dumps({"kind": "serve", "version": 1, **SERVE}))
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}
    )
    try:
        _open(driver, base_url)
        driver.find_element(By.ID, "upload-input").send_keys(str(fleet_file))
        assert _wait_answered(driver, "fleet-results", 0) == "ok", _text(driver, "fleet-form-error")
        assert driver.find_element(By.ID, "tab-fleet").get_attribute("aria-selected") == "true"
        assert driver.find_element(By.ID, "fleet-model-input").get_attribute("value") == "llama-3-8b"
        assert driver.find_element(By.ID, "fleet-failures-seed-input").get_attribute("value") == "3"
        document = cli_json(["fleet", "scenario", str(fleet_file)])
        run = document["run"]
        for element_id, key in (
            ("fleet-devices", "devices"),
            ("fleet-days", "wall_clock_days"),
            ("fleet-mw", "facility_power_mw"),
            ("fleet-mwh", "energy_mwh"),
            ("fleet-step-time", "step_time_s"),
            ("fleet-mfu", "mfu"),
        ):
            assert _value(driver, element_id) == run[key], element_id
        _assert_shown(_headline(_text(driver, "fleet-days")), run["wall_clock_days"])
        _assert_shown(_headline(_text(driver, "fleet-step-time")), run["step_time_s"])
        assert _text(driver, "fleet-plan") == run["plan"]
        assert _value(driver, "fleet-ettr") == document["goodput"]["effective_training_time_ratio"]
        cells = driver.find_elements(By.CSS_SELECTOR, "#fleet-comparison tbody tr td:nth-child(3)")
        assert [float(str(c.get_attribute("data-value"))) for c in cells] == [
            r["run"]["wall_clock_days"] for r in document["comparison"]["rows"]
        ]
        page = driver.execute_script("const d = document.documentElement; return [d.scrollWidth, d.clientWidth]")
        assert page[0] <= page[1], "the fleet tab scrolls sideways at 1280x800"

        _set(driver, "fleet_tokens", "-5")  # the old answer is greyed, the message is beside the field
        driver.find_element(By.ID, "fleet-run").click()
        assert _wait_answered(driver, "fleet-results", 1) == "error"
        assert "tokens=-5 is invalid" in _text(driver, "fleet-tokens-error")
        answer = driver.find_element(By.CSS_SELECTOR, "#fleet-results .answer")
        assert float(answer.value_of_css_property("opacity")) < 0.5

        driver.find_element(By.ID, "upload-input").send_keys(str(serve_file))
        assert _wait_answered(driver, "serve-results", 0) == "ok", _text(driver, "serve-form-error")
        assert driver.find_element(By.ID, "panel-fleet").get_attribute("hidden") is not None
        expected = cli_json(["report", str(serve_file), "-o", str(tmp_path / "serve.html")])
        sizing = expected["sizing"]
        best = next(o for o in sizing["options"] if o["fleet"] == sizing["best"])
        assert _text(driver, "serve-best") == sizing["best"]
        assert _value(driver, "serve-devices") == best["devices"]
        assert _value(driver, "serve-usd-per-hour") == best["usd_per_hour"]
        assert _value(driver, "serve-ttft-p99") == expected["simulation"]["ttft_ms"]["p99"]
        _assert_shown(_text(driver, "serve-ttft-p99"), expected["simulation"]["ttft_ms"]["p99"])
        assert len(driver.find_elements(By.CSS_SELECTOR, "#serve-options tbody tr")) == len(sizing["options"])
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_keyboard_only_tabs_and_a_top_plan_loaded_with_enter(driver: WebDriver, base_url: str) -> None:
    fields = {"model": "llama-3-8b", "accelerator": "h100-sxm", "count": "64", "plan": "search", "gbs": "64"}
    _open(driver, base_url)
    tab = driver.find_element(By.ID, "tab-training")
    tab.send_keys(Keys.ARROW_RIGHT)  # the arrows move between tabs
    assert driver.switch_to.active_element.get_attribute("id") == "tab-fleet"
    assert driver.find_element(By.ID, "panel-fleet").is_displayed()
    driver.switch_to.active_element.send_keys(Keys.HOME)
    assert driver.find_element(By.ID, "panel-training").is_displayed()
    _fill(driver, fields)
    assert _answer(driver) == "ok"
    rows = driver.find_elements(By.CSS_SELECTOR, "#top-plans tbody tr")
    assert len(rows) >= 2
    second = str(rows[1].get_attribute("data-plan"))
    before = int(driver.find_element(By.ID, "results").get_attribute("data-runs") or "0")
    driver.execute_script("arguments[0].focus()", rows[1])
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    assert _wait_answered(driver, "results", before) == "ok"
    assert driver.find_element(By.ID, "plan-input").get_attribute("value") == second
    args = ["train", "estimate", "--model", "llama-3-8b", "--accelerator", "h100-sxm", "--count", "64"]
    _assert_headline(driver, cli_json([*args, "--plan", second]))


def test_sweep_upload_keyboard_and_a_greyed_error(driver: WebDriver, base_url: str, tmp_path: Path) -> None:
    """A sweep file, uploaded, fills the Sweep tab (clusters as ``accelerator x counts``) and shows the rows the
    sweep route answers (equal to rainier results export: test_questions) at 1280x800 without sideways scrolling;
    re-run from the keyboard with a bad gbs, the old rows grey and the message sits beside the field."""
    import httpx

    from tests.web.test_questions import SWEEP

    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(json.dumps({"kind": "sweep", "version": 1, **SWEEP}))  # JSON is YAML
    expected = httpx.post(base_url + "/api/sweep", json=SWEEP, timeout=WAIT_S).json()["result"]
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}
    )
    try:
        _open(driver, base_url)
        driver.find_element(By.ID, "tab-training").send_keys(Keys.END)  # the last tab, from the keyboard
        assert driver.switch_to.active_element.get_attribute("id") == "tab-sweep"
        assert driver.find_element(By.ID, "panel-sweep").is_displayed()
        driver.find_element(By.ID, "upload-input").send_keys(str(sweep_file))
        assert _wait_answered(driver, "sweep-results", 0) == "ok", _text(driver, "sweep-form-error")
        assert driver.find_element(By.ID, "sweep-clusters-input").get_attribute("value") == "h100-sxm x 8,16"
        assert driver.find_element(By.ID, "sweep-models-input").get_attribute("value") == "llama-3-8b"
        assert _value(driver, "sweep-cells") == expected["cells"] == 2
        rows = driver.find_elements(By.CSS_SELECTOR, "#sweep-rows tbody tr")
        assert len(rows) == len(expected["rows"])
        for row, want in zip(rows, expected["rows"], strict=True):
            cells = row.find_elements(By.TAG_NAME, "td")
            assert cells[5].text == want["plan"] and cells[5].get_attribute("data-value") == want["best_plan"]
            assert float(str(cells[6].get_attribute("data-value"))) == want["step_time_s"]
            _assert_shown(cells[6].text, want["step_time_s"])
            _assert_shown(cells[8].text, want["mfu"] * 100)
            assert float(str(cells[7].get_attribute("data-value"))) == want["tokens_per_s"]
        page = driver.execute_script("const d = document.documentElement; return [d.scrollWidth, d.clientWidth]")
        assert page[0] <= page[1], "the sweep tab scrolls sideways at 1280x800"

        gbs = driver.find_element(By.ID, "sweep-gbs-input")
        gbs.send_keys(Keys.END, ",-1", Keys.ENTER)  # Enter in a field submits its form
        assert _wait_answered(driver, "sweep-results", 1) == "error"
        assert "gbs[1]: -1 is invalid" in _text(driver, "sweep-gbs-error")
        assert gbs.get_attribute("aria-invalid") == "true"
        answer = driver.find_element(By.CSS_SELECTOR, "#sweep-results .answer")
        assert float(answer.value_of_css_property("opacity")) < 0.5
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
