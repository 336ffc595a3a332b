"""The page at `/` in a real browser: Debian's headless Chromium driven by selenium against an
`asr serve` process. A file upload shows the transcript with each word's time (as `asr
transcribe` times it), an unreadable file shows the error in words, and the microphone path
(Chromium's fake capture device playing a WAV file) records and shows a transcript."""

from __future__ import annotations

import base64
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("selenium", reason="the page tests need selenium")
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.serve_fixtures import ServeProcess, offline, tiny_model

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Chromium and chromedriver are not installed (Debian: apt-get install chromium "
    "chromium-driver; `make install-synth` does it when run as root)",
)
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    "--window-size=1000,900",
]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory)


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    log = tmp_path_factory.mktemp("page-log") / "serve.log"
    process = ServeProcess(model.checkpoint, log).wait_ready()
    yield process
    assert process.terminate() == 0, process.output()


def chromium(*flags: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, *flags):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


@pytest.fixture
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def wait_for_result(driver: webdriver.Chrome, timeout: float = 60.0) -> None:
    """Until the page shows a transcript or an error."""
    WebDriverWait(driver, timeout).until(
        lambda d: d.find_element(By.ID, "text").text or d.find_element(By.ID, "error").text
    )


def shown_words(driver: webdriver.Chrome) -> list[dict]:
    """Each word on the page: its text, data attributes, and the time and confidence shown."""
    return driver.execute_script(
        """return [...document.querySelectorAll('#transcript .word')].map(w => ({
            word: w.firstChild.textContent, start: Number(w.dataset.start),
            end: Number(w.dataset.end), shown: w.querySelector('small').textContent,
            low: w.classList.contains('low')}));"""
    )


def test_upload_shows_the_transcript_and_word_times(server, model, browser, tmp_path):
    path = model.files[5]
    (record,) = offline(model.checkpoint, [path])
    browser.get(server.url + "/")
    assert browser.title == "rnn-asr"
    WebDriverWait(browser, 20).until(
        lambda d: "Model: exp/" in d.find_element(By.ID, "status").text
    )
    browser.find_element(By.ID, "file").send_keys(str(path))
    wait_for_result(browser)
    assert browser.find_element(By.ID, "error").text == ""
    assert browser.find_element(By.ID, "text").text == record["text"]
    words = shown_words(browser)
    assert [(w["word"], w["start"], w["end"]) for w in words] == [
        (w["word"], w["start"], w["end"]) for w in record["words"]
    ]
    for w, expected in zip(words, record["words"], strict=True):
        assert w["shown"] == f"{expected['start']:.2f} s · {round(100 * expected['confidence'])}%"
        assert w["low"] == (expected["confidence"] < 0.5)
    browser.find_elements(By.CSS_SELECTOR, "#transcript .word")[-1].click()
    position = browser.execute_script("return document.getElementById('player').currentTime;")
    assert position >= words[-1]["start"]  # playing from the clicked word
    browser.save_screenshot(str(tmp_path / "upload.png"))
    assert (tmp_path / "upload.png").stat().st_size > 1000


def test_an_unreadable_file_shows_the_error_in_words(server, browser, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("these are not samples")
    browser.get(server.url + "/")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    wait_for_result(browser)
    error = browser.find_element(By.ID, "error").text
    assert error.startswith("Error 400: notes.wav: cannot read audio"), error
    assert browser.find_element(By.ID, "text").text == ""


def recorded_wav(driver: webdriver.Chrome, path: Path) -> Path:
    """The WAV the page recorded and sent (the player's source), saved to `path`."""
    data = driver.execute_async_script(
        """const done = arguments[0];
        fetch(document.getElementById('player').src).then(r => r.blob()).then(blob => {
            const reader = new FileReader();
            reader.onload = () => done(reader.result.split(',')[1]);
            reader.readAsDataURL(blob);
        });"""
    )
    path.write_bytes(base64.b64decode(data))
    return path


def test_the_microphone_records_and_shows_a_transcript(server, model, tmp_path):
    """Chromium's fake microphone plays a tone utterance in a loop; two seconds of it are
    recorded in the page as 16-bit WAV, sent, and the transcript shown is `asr transcribe`'s
    of that WAV."""
    driver = chromium(
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={model.files[0]}",
    )
    try:
        driver.get(server.url + "/")
        record = driver.find_element(By.ID, "record")
        record.click()
        WebDriverWait(driver, 20).until(lambda d: record.text == "Stop")
        time.sleep(2.0)  # the recording's length
        record.click()
        WebDriverWait(driver, 60).until(
            lambda d: (
                d.find_element(By.ID, "status").text.startswith("Done:")
                or d.find_element(By.ID, "error").text
            )
        )
        assert driver.find_element(By.ID, "error").text == ""
        wav = recorded_wav(driver, tmp_path / "recording.wav")
        info = sf.info(wav)
        assert info.subtype == "PCM_16" and info.channels == 1 and info.duration > 1.5
        samples, _ = sf.read(wav)
        assert np.sqrt(np.mean(samples**2)) > 0.01  # the tones were heard, not silence
        (expected,) = offline(model.checkpoint, [wav])
        assert driver.find_element(By.ID, "text").text == expected["text"]
        assert [w["word"] for w in shown_words(driver)] == expected["text"].split()
        driver.save_screenshot(str(tmp_path / "microphone.png"))
        assert (tmp_path / "microphone.png").stat().st_size > 1000
    finally:
        driver.quit()
