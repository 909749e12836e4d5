"""The leaf-photo diagnosis web app (FastAPI): an upload page, ``POST /api/predict`` and ``GET /healthz``.

Bad input never gives a 5xx: an empty upload is 400, an upload over the limit 413, a non-image 415 and a
corrupt or truncated image 422, each with a JSON body ``{"error": "..."}``.
"""

from __future__ import annotations

import threading
import time
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..runtime import ImageError, Model

DEFAULT_MAX_UPLOAD_MB = 10.0
STATUS = {"empty": 400, "not-image": 415, "corrupt": 422}
RAW_TYPES = ("", "application/octet-stream")  # raw bodies besides image/*


class UploadError(Exception):
    """A bad upload, answered with ``status`` and a JSON error message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


async def _read_upload(request: Request, limit: int) -> bytes:
    """The image bytes of a multipart upload (field ``file``) or of a raw ``image/*`` body."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise UploadError(413, f"upload is {_mb(int(declared))}; the limit is {_mb(limit)}")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in RAW_TYPES and not ctype.startswith("image/") and ctype != "multipart/form-data":
        raise UploadError(415, f"unsupported content type {ctype!r}: send the image as a multipart form field "
                               "named 'file' or as a raw image/* body")
    if ctype == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=10)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise UploadError(400, "no file in the upload: send the image in a form field named 'file'")
        data = await upload.read(limit + 1)
        await form.close()
    else:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise UploadError(413, f"upload is over the limit of {_mb(limit)}")
            chunks.append(chunk)
        data = b"".join(chunks)
    if len(data) > limit:
        raise UploadError(413, f"upload is over the limit of {_mb(limit)}")
    if not data:
        raise UploadError(400, "empty upload: no image data")
    return data


def create_app(model: Model, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB) -> FastAPI:
    """The web app serving ``model``; uploads larger than ``max_upload_mb`` megabytes are refused."""
    if max_upload_mb <= 0:
        raise ValueError(f"max_upload_mb must be > 0, got {max_upload_mb}")
    size = model.input_size or []
    if len(size) != 3 or size[0] not in (1, 3):
        raise ValueError(f"model {model.arch!r} takes input {size}, not images; it cannot serve photos")
    limit = int(max_upload_mb * 1e6)
    app = FastAPI(title="deepcompress leaf diagnosis", docs_url="/api/docs", redoc_url=None)
    page = resources.files(__package__).joinpath("index.html").read_text(encoding="utf-8")
    lock = threading.Lock()  # the runtime's first-call kernel timing is not meant to race
    started = time.time()

    def classify(data: bytes) -> dict:
        with lock:
            return model.classify(data, top_k=3).to_dict()

    @app.exception_handler(UploadError)
    async def upload_error(_request: Request, e: UploadError) -> JSONResponse:
        return JSONResponse({"error": e.message}, status_code=e.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code, headers=e.headers)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "model": model.arch, "uptime_s": round(time.time() - started, 1)}

    @app.get("/api/model")
    async def model_facts() -> dict:
        return {**model.describe(), "max_upload_bytes": limit}

    @app.post("/api/predict")
    async def predict(request: Request) -> dict:
        data = await _read_upload(request, limit)
        try:
            result = await run_in_threadpool(classify, data)
        except ImageError as e:
            raise UploadError(STATUS[e.kind], str(e)) from e
        return {**result, "model": model.describe()}

    return app
