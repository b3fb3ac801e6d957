"""The pokedex web service: `create_app(settings)` builds it around one loaded model.

    POST /predict   an image (multipart field `file`, or the raw body) -> classify.py's JSON
    GET  /info      the model: classes, architecture, input size, training date, test accuracy
    GET  /health    liveness and the batcher's queue, never behind the token
    GET  /          the upload page (templates/, static/); OpenAPI docs at /docs

Every refusal is a 4xx with one line of JSON, `{"error": "..."}`, decided in
this file: the upload limit (413, checked on Content-Length and again while
the body streams in), a stalled or too slow upload (408), the token (401),
content types (415), unreadable images (422, the loader's own wording), and a
full queue or too many decodes waiting (503 + Retry-After).

Memory stays bounded: bodies by `max_upload_bytes` per connection and
`max_connections`, and decoding (which can take far more than the upload) by
`max_decodes` at once, each image bounded by the loader.
"""

import asyncio
import contextlib
import datetime
import io
import logging
import os
import secrets

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from pyimagesearch import inference, results
from pyimagesearch.imageio import UnreadableImageError, load_image
from pyimagesearch.server.batching import BatchingPredictor, QueueFullError

HERE = os.path.dirname(os.path.abspath(__file__))
RETRY_AFTER_S = 1  # what a client told 503 waits before trying again
# The page loads nothing from elsewhere; the browser is told to refuse it too.
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
               "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'")
IMAGE_BODY = {"content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"}}}},
    "image/*": {"schema": {"type": "string", "format": "binary"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    "required": True, "description": "the image: a multipart field `file`, or the raw body"}

log = logging.getLogger("pokedex.server")


class ApiError(Exception):
    """A refusal the client can act on: HTTP `status` and a one-line `message`."""

    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class _NamedUpload(io.BytesIO):
    """Uploaded bytes that the image loader names as the upload, never as a path."""

    def __init__(self, data, name):
        super().__init__(data)
        self.name = name

    def __str__(self):
        return self.name


def create_app(settings, classifier=None):
    """A FastAPI app serving `settings.model`; `classifier` may be passed in already loaded."""
    if classifier is None:
        classifier = inference.Classifier(settings.model, settings.labelbin,
                                          backend=settings.backend, log=log.info)
    predictor = BatchingPredictor(
        lambda images: _answer_rows(classifier, images, settings.max_batch),
        max_batch=settings.max_batch, wait_s=settings.batch_wait_ms / 1000,
        max_queue=settings.max_queue)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        app.state.decodes = asyncio.Semaphore(settings.max_decodes)  # this loop's
        await predictor.start()
        try:
            yield
        finally:
            await predictor.stop()

    app = FastAPI(title="pokedex", lifespan=lifespan,
                  description="Classify an image with a model trained by train.py.")
    app.state.settings, app.state.classifier, app.state.predictor = settings, classifier, predictor
    _add_error_handlers(app)
    info = model_info(settings, classifier)
    templates = Jinja2Templates(directory=os.path.join(HERE, "templates"))
    app.mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static")

    # A dependency, so it runs before the query is checked; HTTPBearer puts an
    # "Authorize" button in /docs. auto_error=False: the refusal is ours (401, one line).
    async def authorize(credentials=Depends(HTTPBearer(auto_error=False))):
        if settings.token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not secrets.compare_digest(given.encode(), settings.token.encode()):
            raise ApiError(401, "a token is required: send the header "
                                "'Authorization: Bearer <token>'",
                           headers={"WWW-Authenticate": "Bearer"})

    @app.post("/predict", openapi_extra={"requestBody": IMAGE_BODY},
              dependencies=[Depends(authorize)])
    async def predict(request: Request,
                      top_k: int = Query(settings.top_k, ge=1, le=1000,
                                         description="labels in the answer, best first"),
                      min_confidence: float = Query(settings.min_confidence, ge=0, le=1,
                                                    description="answer 'unknown' below this"),
                      unknown: bool = Query(True, description="answer 'unknown' for images "
                                                              "unlike the training images")):
        """Classify one image; the answer has classify.py --json's fields."""
        data, name = await read_image_upload(request, settings)
        async with decode_slot(request.app.state.decodes, settings.decode_wait_s):
            try:
                image = await run_in_threadpool(load_image, _NamedUpload(data, name),
                                                classifier.image_size)
            except UnreadableImageError as error:  # the loader's wording, named after the upload
                message = str(error)
                raise ApiError(422, name + message if message.startswith(": ")
                               else message) from None
        try:
            probabilities, is_unknown = await predictor.predict(image)
        except QueueFullError as error:
            raise busy(str(error)) from None
        return results.describe(name, probabilities, classifier.class_names, top_k,
                                min_confidence, unknown=bool(is_unknown) and unknown)

    @app.get("/info", dependencies=[Depends(authorize)])
    async def get_info():
        """The model being served, from its own description."""
        return info

    @app.get("/health")
    async def health():
        """Liveness, the images waiting for the model, and model calls by batch size."""
        return {"status": "ok", "backend": classifier.backend, "queued": predictor.queued,
                "batches": dict(sorted(predictor.batch_sizes.items()))}

    @app.get("/", include_in_schema=False)
    async def page(request: Request):
        response = templates.TemplateResponse(request, "index.html", {
            "top_k": min(max(settings.top_k, 3), len(classifier.class_names)),
            "min_confidence": settings.min_confidence,
            "max_upload_bytes": settings.max_upload_bytes,
            "token_required": settings.token is not None})
        response.headers["Content-Security-Policy"] = PAGE_POLICY
        return response

    return app


def busy(reason):
    return ApiError(503, f"busy: {reason}; retry in {RETRY_AFTER_S} s",
                    headers={"Retry-After": str(RETRY_AFTER_S)})


@contextlib.asynccontextmanager
async def decode_slot(decodes, wait_s):
    """Hold one of the decode slots; 503 after waiting `wait_s` for one."""
    try:
        async with asyncio.timeout(wait_s):
            await decodes.acquire()
    except TimeoutError:
        raise busy(f"every decoding slot was taken for {wait_s:g} s") from None
    try:
        yield
    finally:
        decodes.release()


async def read_image_upload(request, settings):
    """(bytes, name) of the uploaded image.

    413 as soon as the body passes `settings.max_upload_bytes`; 408 when the client pauses
    longer than `read_timeout_s` or the whole body takes longer than `upload_timeout_s`.
    """
    limit = settings.max_upload_bytes
    length = request.headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise ApiError(400, f"Content-Length is not a number: {length[:40]!r}")
        if int(length) > limit:
            raise ApiError(413, f"upload of {int(length):,} bytes is over the limit of "
                                f"{limit:,} bytes")
    chunks, total = [], 0
    try:
        async for chunk in _timed_body(request, settings.read_timeout_s,
                                       settings.upload_timeout_s):
            total += len(chunk)
            if total > limit:  # a chunked upload, or a Content-Length that lied
                raise ApiError(413, f"upload is over the limit of {limit:,} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "the client went away during the upload") from None
    body = b"".join(chunks)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        body, name, content_type = await _multipart_file(request, body)
    else:
        name = "upload"
    if content_type not in ("", "application/octet-stream") and \
            not content_type.startswith("image/"):
        raise ApiError(415, f"content type {content_type!r} is not an image: send image/* or "
                            "application/octet-stream, or multipart/form-data with a "
                            "'file' field")
    if not body:
        raise ApiError(400, "the upload is empty: send an image")
    return body, name


async def _timed_body(request, pause_s, total_s):
    """The body's chunks as they come; 408 (and the connection closed) when it stalls."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + total_s
    stream = request.stream()
    while True:
        try:
            async with asyncio.timeout_at(min(deadline, loop.time() + pause_s)):
                chunk = await anext(stream)
        except StopAsyncIteration:
            return
        except TimeoutError:
            why = (f"took longer than {total_s:g} s" if loop.time() >= deadline
                   else f"stalled: no data for {pause_s:g} s")
            raise ApiError(408, f"the upload {why}", headers={"Connection": "close"}) from None
        yield chunk


async def _multipart_file(request, body):
    """(bytes, safe name, content type) of the multipart form's file (`file`, or the first)."""
    async def whole_body():
        yield body

    parser = MultiPartParser(request.headers, whole_body(), max_files=4, max_fields=16)
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise ApiError(400, f"malformed multipart upload: {error.message}") from None
    try:
        uploads = [value for _, value in form.multi_items() if not isinstance(value, str)]
        chosen = form.get("file")
        upload = chosen if chosen is not None and not isinstance(chosen, str) else \
            (uploads[0] if uploads else None)
        if upload is None:
            raise ApiError(400, "the multipart form has no file: send the image as the "
                                "'file' field")
        data = await upload.read()
        content_type = (upload.content_type or "").split(";")[0].strip().lower()
        return data, _safe_name(upload.filename), content_type
    finally:
        await form.close()


def _answer_rows(classifier, images, batch_size):
    """[(probabilities (C,), unknown bool or None)] per image: one model call for the batch."""
    probabilities, unknown = classifier.answer_arrays(images, batch_size=batch_size)
    return list(zip(probabilities, [None] * len(probabilities) if unknown is None else unknown))


def _safe_name(filename):
    """The upload's file name without any folders (a label, never a path to open)."""
    name = os.path.basename((filename or "").replace("\\", "/")).strip()
    name = "".join(c for c in name if c.isprintable())[:200]
    return name or "upload"


def model_info(settings, classifier):
    """What /info answers, from the model's own description (None where it records nothing)."""
    description = inference.model_description(settings.model) or {}
    trained = description.get("trained_at") or description.get("created")
    if trained is None:  # the model file's own date
        modified = os.path.getmtime(settings.model)
        trained = datetime.datetime.fromtimestamp(modified, datetime.timezone.utc) \
            .isoformat(timespec="seconds")
    return {"classes": classifier.class_names, "num_classes": len(classifier.class_names),
            "architecture": description.get("architecture"),
            "image_size": classifier.image_size, "channel_order": classifier.channel_order,
            "trained": trained, "test_accuracy": description.get("test_accuracy"),
            "best_val_accuracy": description.get("best_val_accuracy"),
            "run_id": description.get("run_id"), "backend": classifier.backend,
            "confidence": description.get("confidence"),
            "unknown_answers": classifier.head is not None,
            "model": os.path.basename(settings.model),
            "defaults": {"top_k": settings.top_k, "min_confidence": settings.min_confidence},
            "max_upload_bytes": settings.max_upload_bytes,
            "token_required": settings.token is not None}


def _add_error_handlers(app):
    def refusal(status, message, headers=None):
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request, error):
        return refusal(error.status, error.message, error.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request, error):  # 404, 405 and the like from routing
        return refusal(error.status_code, str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_query(request, error):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
        given = first.get("input")
        return refusal(422, f"{where}: {first.get('msg', 'invalid')} (got {given!r})")

    @app.exception_handler(Exception)
    async def unexpected(request, error):  # a bug of ours: logged, no traceback sent
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return refusal(500, f"internal error ({type(error).__name__}); see the server log")
