"""End to end in a real browser: headless Chromium uploads a bean-leaf photo to ``deepcompress serve``.

Needs Debian's ``chromium`` (/usr/bin/chromium) and Playwright for Python; no browser is downloaded.
Screenshots go to $DEEPCOMPRESS_ARTIFACTS when set, else to the test's tmp folder.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from deepcompress import runtime

BEANS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "beans_ibean"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser, pytest.mark.shared_data]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def bean_photos() -> dict[str, list[Path]]:
    if not BEANS.is_dir():
        pytest.skip(f"real leaf photos not found at {BEANS}")
    classes = sorted(p.name for p in BEANS.iterdir() if p.is_dir())
    return {c: sorted((BEANS / c).glob("*.jpg"))[:9] for c in classes}


@pytest.fixture(scope="module")
def server(bean_photos: dict[str, list[Path]], make_tiny: Callable[..., Path],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``deepcompress serve`` (in a thread) for a tiny model trained briefly on 8 photos per class."""
    import uvicorn

    from deepcompress.webapp import create_app

    classes = list(bean_photos)
    xs = [runtime.to_input(runtime.open_image(p), [3, 32, 32], [0.5] * 3, [0.25] * 3)
          for c in classes for p in bean_photos[c][:8]]
    ys = [i for i, c in enumerate(classes) for _ in bean_photos[c][:8]]
    path = make_tiny(tmp_path_factory.mktemp("beans") / "beans.dcz", torch.from_numpy(np.concatenate(xs)),
                     torch.tensor(ys), classes)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(runtime.load(path)), host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the web server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    srv.should_exit = True
    thread.join(10)


def test_diagnose_a_leaf_photo_in_chromium(server: str, bean_photos: dict[str, list[Path]],
                                           tmp_path: Path) -> None:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not installed at {CHROMIUM} (Debian: apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    photo = bean_photos[next(iter(bean_photos))][-1]  # not among the training photos
    artifacts = Path(os.environ.get("DEEPCOMPRESS_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 420, "height": 900})
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server)
                       else route.abort())  # loopback only
            page.goto(server)
            file_input = page.locator("#file")
            assert file_input.get_attribute("accept") == "image/*"
            assert file_input.get_attribute("capture") == "environment"
            page.wait_for_function("document.getElementById('model-size').textContent !== '…'")
            file_input.set_input_files(str(photo))
            page.wait_for_selector("#result:not([hidden])", timeout=20_000)
            diagnosis = page.locator("#diagnosis").inner_text()
            assert diagnosis in {c.replace("_", " ") for c in bean_photos}
            assert page.locator("#confidence").inner_text().startswith("confidence ")
            assert page.locator("#top li").count() == 3
            assert "J" in page.locator("#energy").inner_text()
            shot = artifacts / "leaf-diagnosis.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 1000

            page.set_input_files("#file", files=[{"name": "notes.jpg", "mimeType": "image/jpeg",
                                                  "buffer": b"not a photo"}])
            page.wait_for_selector("#error:not([hidden])", timeout=20_000)
            assert "not an image" in page.locator("#error").inner_text()
            page.screenshot(path=str(artifacts / "leaf-diagnosis-error.png"), full_page=True)
        finally:
            browser.close()
