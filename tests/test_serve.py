"""The web app's JSON API and page through FastAPI's test client (no browser, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deepcompress import runtime
from deepcompress.webapp import create_app


@pytest.fixture(scope="module")
def client(tiny_dcz: Path) -> TestClient:
    return TestClient(create_app(runtime.load(tiny_dcz), max_upload_mb=0.05), raise_server_exceptions=True)


def _post(client: TestClient, data: bytes, name: str = "leaf.jpg", ctype: str = "image/jpeg"):
    return client.post("/api/predict", files={"file": (name, data, ctype)})


def test_page_offers_the_camera(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'type="file" accept="image/*" capture="environment"' in r.text


def test_health_and_model_facts(client: TestClient, tiny_dcz: Path) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    facts = client.get("/api/model").json()
    assert facts["arch"] == "test-tinynet" and facts["classes"] == ["red", "green", "blue"]
    assert facts["file_bytes"] == tiny_dcz.stat().st_size and facts["energy_uj"] > 0
    assert facts["max_upload_bytes"] == 50_000


def test_predict_multipart_and_raw(client: TestClient, colour_files: list[Path]) -> None:
    blue = colour_files[7]
    r = _post(client, blue.read_bytes(), blue.name, "image/png" if blue.suffix == ".png" else "image/jpeg")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"] == "blue" and 0 < body["confidence"] <= 1
    assert [t["label"] for t in body["top"]][0] == "blue" and len(body["top"]) == 3
    assert body["model"]["file_bytes"] > 0 and body["time_ms"] > 0
    raw = client.post("/api/predict", content=colour_files[0].read_bytes(), headers={"content-type": "image/jpeg"})
    assert raw.status_code == 200 and raw.json()["label"] == "red"


@pytest.mark.parametrize("case", ["empty", "text", "truncated", "truncated-png", "too-big", "too-big-raw", "no-file",
                                  "form-urlencoded", "wrong-field", "empty-raw"])
def test_bad_uploads_get_clear_4xx(client: TestClient, colour_files: list[Path], case: str) -> None:
    jpeg = colour_files[0].read_bytes()
    png = next(p for p in colour_files if p.suffix == ".png").read_bytes()
    if case == "empty":
        r, status, words = _post(client, b""), 400, "empty"
    elif case == "text":
        r, status, words = _post(client, b"hello, not a photo", "leaf.txt", "text/plain"), 415, "not an image"
    elif case == "truncated":
        r, status, words = _post(client, jpeg[:len(jpeg) // 2]), 422, "truncated"
    elif case == "truncated-png":
        r, status, words = _post(client, png[:len(png) // 2], "x.png", "image/png"), 422, "corrupt"
    elif case == "too-big":
        r, status, words = _post(client, b"\xff" * 200_000), 413, "limit"
    elif case == "too-big-raw":
        r = client.post("/api/predict", content=iter([b"\xff" * 30_000] * 3), headers={"content-type": "image/jpeg"})
        status, words = 413, "limit"
    elif case == "no-file":
        r, status, words = client.post("/api/predict", files={"note": (None, "hi")}), 400, "field named 'file'"
    elif case == "form-urlencoded":
        r, status, words = client.post("/api/predict", data={"file": "leaf.jpg"}), 415, "content type"
    elif case == "wrong-field":
        r = client.post("/api/predict", files={"photo": ("a.jpg", jpeg, "image/jpeg")})
        status, words = 400, "field named 'file'"
    else:
        r, status, words = client.post("/api/predict", content=b""), 400, "empty"
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_unknown_routes_and_methods_are_json_4xx(client: TestClient) -> None:
    assert client.get("/nope").status_code == 404
    r = client.get("/api/predict")
    assert r.status_code == 405 and "error" in r.json()


def test_refuses_models_that_take_no_images(tiny_dcz: Path) -> None:
    model = runtime.load(tiny_dcz)
    model.input_size = [64]
    with pytest.raises(ValueError, match="not images"):
        create_app(model)
    with pytest.raises(ValueError, match="max_upload_mb"):
        create_app(runtime.load(tiny_dcz), max_upload_mb=0)
