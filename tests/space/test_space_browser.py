"""The Space in a real browser: Debian's chromium driven by Playwright uploads videos and clicks run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 30_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Debian chromium is not installed at {CHROMIUM} "
                                                               "(run `make system-deps`)")


@pytest.fixture
def page(live_app):
    from playwright.sync_api import sync_playwright  # a test extra: missing it is an error, not a skip

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(live_app.url)
            page.wait_for_selector("#run-button")
            yield page
        finally:
            browser.close()


def _upload(page, path: Path) -> None:
    clear = page.locator("#input-video button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    page.locator("#input-video input[type=file]").set_input_files(str(path))


def _run_a_text_file_named_like_a_video(page, videos, tmp_path) -> None:
    """Upload a text file named ``clip.mp4`` (it gets past the file picker), run, and wait for the server's message."""
    fake = tmp_path / "clip.mp4"
    shutil.copy(videos["text"], fake)
    _upload(page, fake)
    page.locator("#input-video video").wait_for()
    page.click("#run-button")
    page.get_by_text("clip.mp4 could not be opened as a video").wait_for()


def test_upload_run_and_recover_from_a_bad_file(page, videos, tmp_path):
    # 1. A text file: the page says it is not a video file; running without a video says so too.
    _upload(page, videos["text"])
    page.get_by_text("Invalid file type: notes.txt").wait_for()
    page.click("#run-button")
    page.get_by_text("No video: upload one").wait_for()

    # 2. A text file named like a video gets past the file picker: the server's message is shown in the page.
    _run_a_text_file_named_like_a_video(page, videos, tmp_path)

    # 3. The next valid request succeeds: plot, overlay video, events and downloads appear.
    _upload(page, videos["walk"])
    page.locator("#input-video video").wait_for()
    page.click("#preset input")  # a preset fills the names box
    page.get_by_role("option", name="UCSD Ped").click()
    page.wait_for_function("() => document.querySelector('#names textarea').value === "
                           "'car, cart, wheelchair, skate, bicycle'")
    page.fill("#names textarea", "red square, fightin")  # typed names: the preset shows "Custom"
    page.locator("#names textarea").press_sequentially("g")  # a key press, as a visitor types (fill sends none)
    page.wait_for_function("() => document.querySelector('#preset input').value === 'Custom'", timeout=5000)
    page.click("#run-button")
    plot = page.locator("#score-plot img")
    plot.wait_for()
    assert "scores.png" in plot.get_attribute("src")
    overlay = page.locator("#overlay-video video")
    overlay.wait_for()
    assert "overlay.mp4" in overlay.get_attribute("src")
    page.get_by_text("walk.mp4:").wait_for()  # the summary line
    page.locator("#downloads a[download='result.json']").wait_for()
    page.locator("#downloads a[download='scores.csv']").wait_for()
    assert plot.evaluate("image => image.complete && image.naturalWidth > 0")
    assert page.locator("#events tbody tr").count() >= 1
    for close in page.locator(".toast-close").all():  # the earlier errors' messages would hide the plot
        close.click()
    page.locator(".toast-body").first.wait_for(state="detached")
    screenshot = tmp_path / "space.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000


def _results_shown(page) -> dict[str, int]:
    """How many of each result the page shows (events: table rows with any text)."""
    rows = page.evaluate("() => [...document.querySelectorAll('#events tbody tr')]"
                         ".filter(row => row.innerText.trim() !== '').length")
    return {"plot": page.locator("#score-plot img").count(), "overlay": page.locator("#overlay-video video").count(),
            "events": rows, "downloads": page.locator("#downloads a[download='result.json']").count()}


def test_an_example_click_shows_its_results_and_a_failed_run_clears_them(page, tmp_path, videos):
    # 1. An example fills in the video, the synthetic world's names and its preset, and runs.
    page.get_by_text("held-out shape crosses the scene (anomaly)").click()
    page.wait_for_function("() => (document.querySelector('#input-video video') || {}).src?.includes('held-out')")
    page.wait_for_function("() => document.querySelector('#preset input').value.startsWith('Synthetic world')")
    assert page.input_value("#names textarea").startswith("red circle, red hexagon")
    page.get_by_text("held-out-crossing.mp4:").wait_for()  # the summary: the detection ran
    assert "scores.png" in page.locator("#score-plot img").get_attribute("src")
    page.locator("#downloads a[download='result.json']").wait_for()
    shown = _results_shown(page)
    assert (shown["plot"], shown["overlay"], shown["downloads"]) == (1, 1, 1)

    # 2. A failed run takes the previous results off the page: nothing under the error belongs to another video.
    _run_a_text_file_named_like_a_video(page, videos, tmp_path)
    page.wait_for_function("() => !document.querySelector('#score-plot img')", timeout=5000)
    assert _results_shown(page) == {"plot": 0, "overlay": 0, "events": 0, "downloads": 0}
    assert "held-out-crossing.mp4" not in page.inner_text("#summary")


def test_names_edited_without_typing_show_the_custom_preset(page):
    page.click("#preset input")
    page.get_by_role("option", name="UCSD Ped").click()
    page.wait_for_function("() => document.querySelector('#names textarea').value.startsWith('car, cart')")
    page.locator("#names textarea").focus()
    page.keyboard.press("End")
    page.keyboard.insert_text(", bus")  # as a paste or a dropped text arrives: no key press
    page.wait_for_function("() => document.querySelector('#preset input').value === 'Custom'", timeout=5000)
    page.fill("#names textarea", "car, cart, wheelchair, skate, bicycle")  # back to the preset's names
    page.wait_for_function("() => document.querySelector('#preset input').value === 'UCSD Ped'", timeout=5000)
