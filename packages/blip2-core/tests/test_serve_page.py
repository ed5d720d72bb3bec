"""The page at /, in a real browser: Debian's chromium, headless, driven by Playwright for Python.

Playwright's own browser download cannot run here, so the test points it at the system's chromium
(``apt-get install chromium``) and skips, saying so, when either is missing.
"""

import base64
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the page's test needs blip2-core[serve]")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

from blip2_core.inference.predictor import GenerationSettings  # noqa: E402
from blip2_core.serve.app import create_app  # noqa: E402


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: apt-get install chromium (Debian's package)")
def test_upload_caption_ask_and_search_in_the_browser(tiny_predictor, stage1_dir, start_server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (blip2-core[test])")
    from blip2_core.serve.gallery import Gallery

    rng = np.random.RandomState(5)
    folder = tmp_path / "gallery"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(rng.randint(0, 255, (90, 120, 3), dtype=np.uint8)).save(folder / f"shot{i}.jpg")
    gallery = Gallery.load(str(stage1_dir), folder, cache_dir=tmp_path / "cache")
    (best,) = gallery.search(["a dog in the picture"], top_k=3)
    url = start_server(create_app(tiny_predictor, max_wait=0.0, gallery=gallery))
    photo = tmp_path / "photo.jpg"
    Image.fromarray(rng.randint(0, 255, (120, 160, 3), dtype=np.uint8)).save(photo)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    pixels = [tiny_predictor.pixels(Image.open(photo).convert("RGB"))]
    expected_caption = tiny_predictor.caption(pixels, "a photo of", GenerationSettings())[0]
    expected_answer = tiny_predictor.answer(pixels, ["what is in the picture?"], GenerationSettings())[0]

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url + "/")
            sync_api.expect(page.locator("#model")).to_contain_text("float32")
            assert page.locator("#caption-button").is_disabled()  # nothing to caption yet

            page.set_input_files("#file", str(photo))
            sync_api.expect(page.locator("#preview")).to_be_visible()
            page.fill("#prompt", "a photo of")
            page.click("#caption-button")
            sync_api.expect(page.locator("#caption")).to_have_text(expected_caption, timeout=60_000)

            page.fill("#question", "what is in the picture?")
            page.click("#ask-button")
            sync_api.expect(page.locator("#answer")).to_have_text(expected_answer, timeout=60_000)
            sync_api.expect(page.locator("#status")).to_contain_text("done in")

            sync_api.expect(page.locator("#gallery-size")).to_contain_text("3 images")
            page.fill("#search", "a dog in the picture")
            page.click("#search-button")
            results = page.locator("#results li")
            sync_api.expect(results).to_have_count(3, timeout=60_000)
            assert [results.nth(i).inner_text().split(" · ")[0] for i in range(3)] == [hit["image"] for hit in best]
            page.wait_for_function("[...document.querySelectorAll('#results img')].every(i => i.naturalWidth > 0)")
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)

            # the server's refusal is shown to the person, in its own words
            page.set_input_files("#file", str(broken))
            page.click("#caption-button")
            sync_api.expect(page.locator("#error")).to_contain_text("broken.jpg is not a readable image")
            assert page.locator("#caption").inner_text() == ""
            page.screenshot(path=str(tmp_path / "page-error.png"), full_page=True)

            # dropped rather than picked: the same image, the same caption, the error gone
            dropped = page.evaluate_handle(
                """(b64) => {
                    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                    const transfer = new DataTransfer();
                    transfer.items.add(new File([bytes], "dropped.jpg", { type: "image/jpeg" }));
                    return transfer;
                }""",
                base64.b64encode(photo.read_bytes()).decode(),
            )
            page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
            sync_api.expect(page.locator("#preview")).to_have_attribute("alt", "dropped.jpg")
            sync_api.expect(page.locator("#error")).to_be_hidden()
            page.click("#caption-button")
            sync_api.expect(page.locator("#caption")).to_have_text(expected_caption, timeout=60_000)
            assert errors == []
        finally:
            browser.close()
    assert (tmp_path / "page.png").stat().st_size > 10_000
    print(f"screenshots: {tmp_path / 'page.png'}, {tmp_path / 'page-error.png'}")


def test_the_page_ships_in_the_package():
    from blip2_core.serve import app

    names = {path.name for path in Path(app.PAGE).iterdir()}
    assert {"index.html", "page.js", "page.css"} <= names
    html = (Path(app.PAGE) / "index.html").read_text()
    assert "http" not in html.replace("http-equiv", "")  # no CDN: everything is served from here
