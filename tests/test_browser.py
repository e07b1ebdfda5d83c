"""The budget explorer as a web app, in a real browser: `python -m lab explore` serves notebook 08 through
Voila, headless Chromium opens it, a slider moves, and the recommendation and the plot follow.

It needs Chromium and its driver (Debian: chromium, chromium-driver; scripts/test.sh installs them where it
can) and the selenium package (the test extra), and is skipped, with the reason, where one is missing
(`pytest -m browser` runs it alone). The study it shows is a few synthetic rows in a data folder of its
own, so nothing trains and the session's tiny study is left alone.
"""
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import atomic, study
from lab.methods.store import ResultStore

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
REPO = Path(__file__).resolve().parent.parent
START_S = 300  # Voila starts a kernel that imports the lab (torch) and runs notebook 08: slow on a shared CPU


def _missing() -> str | None:
    if CHROMIUM is None:
        return "no chromium on PATH (Debian: apt-get install chromium chromium-driver)"
    if DRIVER is None:
        return "no chromedriver on PATH (Debian: apt-get install chromium-driver)"
    for module in ("selenium", "voila"):
        if importlib.util.find_spec(module) is None:
            return f"the {module} package is not installed (pip install -e '.[test]')"
    return None


if _missing():
    pytest.skip(_missing(), allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SLM, LLM = 1e5, 4e5  # inference FLOPs per token
# method, budget share, pretraining FLOPs, specialization FLOPs per domain, inference FLOPs per token, perplexity
POINTS = [("slm-generic", 1.0, 1e12, 0.0, SLM, 100.0), ("slm", 1.0, 1e12, 1e10, SLM, 60.0),
          ("slm", 0.25, 2.5e11, 1e10, SLM, 70.0), ("slm-hn", 1.0, 1e12, 1e10, SLM, 55.0),
          ("llm", 1.0, 1e12, 4e10, LLM, 45.0), ("slm-is", 1.0, 0.0, 1e12, SLM, 50.0),
          ("slm-is", 0.125, 0.0, 1.2e11, SLM, 65.0)]


def _seed_study(scale: str) -> None:
    """A study's rows in the results store, and the manifest naming them, as `lab.study.run_study` leaves them."""
    store, steps = ResultStore.for_scale(scale), {}
    for method, fraction, pre, spec, inf, ppl in POINTS:
        for set_tokens, gain in ((2_000, 1.0), (16_000, 0.8)):
            for domain, shift in (("code", 0.9), ("legal", 1.1)):
                key = f"{method}/{fraction}/{domain}/{set_tokens}"
                store.add(cache_key=key, method=method, scale=scale, domain=domain, set_tokens=set_tokens,
                          ppl_before=2 * ppl * shift, ppl_after=ppl * shift * gain, pretrain_flops=pre,
                          specialize_flops=spec, inference_flops_per_token=inf)
                steps[key] = {"method": method, "phase": "specialize", "status": "done", "cache_key": key,
                              "fraction": fraction, "budget": pre}
    atomic.write_json(study.manifest_path(scale), {
        "scale": scale, "steps": steps, "pretrain": {}, "plan": {},
        "methods": {m: {"status": "done"} for m in {p[0] for p in POINTS}}})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"lab explore exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    pytest.fail(f"lab explore did not listen on port {port} within {START_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def app(tmp_path, monkeypatch):
    """`python -m lab explore --scale tiny` on a free port, over a synthetic study; its URL."""
    monkeypatch.setenv("LAB_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("LAB_OUT", raising=False)
    _seed_study("tiny")
    port, log = _free_port(), tmp_path / "explore.log"
    with open(log, "w") as out:
        # A session of its own, so that the kernels Voila starts go with it at the end.
        proc = subprocess.Popen([sys.executable, "-m", "lab", "explore", "--scale", "tiny", "--port", str(port),
                                 "--no-browser"], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env=os.environ.copy(), start_new_session=True)
    try:
        _wait_for_port(port, proc, log)
        yield f"http://127.0.0.1:{port}/", log
    finally:
        proc.terminate()  # Voila shuts its kernels down on SIGTERM
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # No sandbox: the tests may run as root (CI), where Chromium refuses to start with one. Every host but
    # this one fails to resolve: the page's stylesheets from a CDN would otherwise hold up its loading on
    # a machine without a network, and the test must reach nothing outside.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,2400", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                "--disable-background-networking", "--disable-component-update", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _state(driver) -> tuple[str, str] | None:
    """The recommendation's text and the live plot's image, once both are on the page.

    None while the page is redrawing: an element found a moment ago may be replaced before it is read.
    """
    try:
        return _read_state(driver)
    except StaleElementReferenceException:
        return None


def _read_state(driver) -> tuple[str, str] | None:
    texts = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".widget-html")
             if "Lowest perplexity" in e.text or "No measured method" in e.text]
    images = [e.get_attribute("src") for e in driver.find_elements(By.CSS_SELECTOR, ".widget-output img")]
    return (texts[0], images[0]) if texts and images and images[0] else None


def _slider(driver, description: str):
    """The handle and the readout of the slider with this description."""
    box = driver.find_element(By.XPATH, f"//div[contains(@class, 'widget-slider')]"
                                        f"[.//label[normalize-space()='{description}']]")
    return box.find_element(By.CSS_SELECTOR, ".noUi-handle"), box.find_element(By.CSS_SELECTOR, ".widget-readout")


def test_a_slider_moves_the_recommendation_and_the_plot(app, browser, tmp_path):
    url, log = app
    browser.get(url)
    try:
        before = WebDriverWait(browser, START_S, poll_frequency=1).until(_state)
    except Exception:
        browser.save_screenshot(str(tmp_path / "explore.png"))
        raise AssertionError(f"the explorer did not render (screenshot {tmp_path / 'explore.png'}); "
                             f"server log:\n{log.read_text()[-3000:]}") from None
    text, image = before
    assert "for 1 domain =" in text and "FLOPs per token" in text, text
    page = browser.find_element(By.TAG_NAME, "body").text
    assert "BudgetExplorer(" not in page and "from lab import" not in page, "code is shown"
    assert "{'method'" not in page, "the cells for headless runs are shown"
    assert "Budget explorer" in page and "The decision tree, from the data" in page

    handle, _ = _slider(browser, "domains")
    ActionChains(browser).click_and_hold(handle).move_by_offset(150, 0).release().perform()
    after = WebDriverWait(browser, 60, poll_frequency=0.5).until(
        lambda d: (s := _state(d)) and s[0] != text and s[1] != image and s)
    domains = int(_slider(browser, "domains")[1].text)
    assert domains > 1 and f"for {domains} domains =" in after[0], (domains, after[0])
    browser.save_screenshot(str(tmp_path / "explore.png"))
