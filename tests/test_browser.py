"""The upload page in a real browser: headless Chromium drives serve.py as a person would.

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them on CI);
without them these tests skip and say so. Screenshots go to
$POKEDEX_SCREENSHOTS (default: the test's tmp folder).
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import RED, REPO_ROOT, build_color_model, make_image
from described import describe_as_trained

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no chromium/chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")

TOKEN = "page-test-token"
DESKTOP, PHONE = (1280, 900), (390, 844)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model_path, labels_path, *flags, timeout=60):
    """serve.py in a subprocess on a free loopback port; returns (process, base URL)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, os.path.join(REPO_ROOT, "serve.py"), "-m", str(model_path),
         "-l", str(labels_path), "--port", str(port), *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
        env=dict(os.environ, POKEDEX_TOKEN=""))
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace")
            process.stdout.close()
            raise RuntimeError(f"serve.py exited {process.returncode}: {output}")
        try:
            with urllib.request.urlopen(url + "health", timeout=1):
                return process, url
        except OSError:
            time.sleep(0.1)
    stop_server(process)
    raise RuntimeError(f"serve.py did not answer on {url} within {timeout} s")


def stop_server(process):
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    process.stdout.close()


def open_browser(size=DESKTOP, phone=False):
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", f"--window-size={size[0]},{size[1]}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    if phone:  # a phone's viewport, pixel ratio and touch, not just a narrow window
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": size[0], "height": size[1], "deviceScaleFactor": 2, "mobile": True})
    return driver


def classify_on_page(driver, image_path, timeout=20):
    """Give the page an image through its file input; the label it shows ('' if none)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.ID, "file").send_keys(os.path.abspath(image_path))
    wait = WebDriverWait(driver, timeout)
    wait.until(lambda d: shown_label(d)
               or d.find_element(By.ID, "token-form").is_displayed()
               or "error" in d.find_element(By.ID, "status").get_attribute("class"))
    return shown_label(driver)


def shown_label(driver):
    """The label as written on the page (its CSS capitalises what the eye sees)."""
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "label").get_attribute("textContent")


def enter_token(driver, token, timeout=20):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    field = driver.find_element(By.ID, "token")
    assert driver.switch_to.active_element == field  # focus moved there for the keyboard
    field.send_keys(token, Keys.ENTER)
    WebDriverWait(driver, timeout).until(shown_label)
    return shown_label(driver)


def requests_made(driver):
    return driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser model")
    model_path, labels_path = build_color_model(folder)
    describe_as_trained(model_path, labels_path, tflite=True)
    process, url = start_server(model_path, labels_path, "--token", TOKEN,
                                "--min-confidence", "0.5")
    try:
        yield url, model_path, labels_path
    finally:
        stop_server(process)


@pytest.fixture
def screenshots(tmp_path):
    folder = os.environ.get("POKEDEX_SCREENSHOTS") or str(tmp_path)
    os.makedirs(folder, exist_ok=True)
    return folder


def test_upload_asks_for_the_token_once_then_shows_the_label(server, tmp_path, screenshots):
    url, model_path, labels_path = server
    red = make_image(tmp_path / "red ball.png", size=(64, 48), color=RED)
    driver = open_browser()
    try:
        driver.get(url)
        assert driver.title == "Pokedex"
        assert classify_on_page(driver, red) == ""  # 401: the page asks for the token
        assert enter_token(driver, TOKEN) == "red"
        from selenium.webdriver.common.by import By

        bars = driver.find_elements(By.CSS_SELECTOR, "#bars li")
        assert len(bars) == 3 and bars[0].text.lower().startswith("red")
        assert driver.find_element(By.ID, "preview").get_attribute("naturalWidth") == "64"
        # Asked once: the next image goes straight through with the stored token.
        example = os.path.join(REPO_ROOT, "examples", "charmander.png")
        from pyimagesearch.inference import Classifier
        from pyimagesearch.results import describe

        classifier = Classifier(str(model_path), str(labels_path))
        expected = describe(example, classifier.predict([example])[0], classifier.class_names,
                            min_confidence=0.5)["label"]
        assert classify_on_page(driver, example) == expected
        assert all(request.startswith(url) for request in requests_made(driver))
        driver.save_screenshot(os.path.join(screenshots, "serve-desktop.png"))
    finally:
        driver.quit()


def test_unsure_answer_reads_unknown_on_a_phone(server, tmp_path, screenshots):
    url = server[0]
    gray = make_image(tmp_path / "gray.png", size=(30, 40), color=(128, 128, 128))
    driver = open_browser(PHONE, phone=True)
    try:
        driver.get(url)
        driver.execute_script("localStorage.setItem('pokedex-token', arguments[0])", TOKEN)
        assert classify_on_page(driver, gray) == "unknown"
        from selenium.webdriver.common.by import By

        assert "best guess" in driver.find_element(By.ID, "status").text
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= PHONE[0]  # nothing sticks out sideways on a narrow screen
        driver.save_screenshot(os.path.join(screenshots, "serve-phone-unknown.png"))
    finally:
        driver.quit()


def test_keyboard_reaches_the_picker_and_bad_files_are_explained(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url = server[0]
    text_file = tmp_path / "notes.png"
    text_file.write_text("not a picture")
    driver = open_browser()
    try:
        driver.get(url)
        driver.execute_script("localStorage.setItem('pokedex-token', arguments[0])", TOKEN)
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
        assert driver.switch_to.active_element.get_attribute("id") == "pick"
        assert classify_on_page(driver, text_file) == ""
        assert "not an image" in driver.find_element(By.ID, "status").text
    finally:
        driver.quit()
