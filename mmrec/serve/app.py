"""The HTTP edge over resident handles: validate, ask the library, answer JSON.

Every ``mmrec.errors.*`` becomes a 4xx with ``{"error": "one line"}`` (404 for an
unknown id, 413 for what is over a limit); anything else is logged and answered 500
with one line, never a traceback, and the server stays up. ``POST /feedback`` appends
events to a served model's feedback journal (:class:`mmrec.recsys.update.FeedbackLog`);
a full or old enough batch is folded into the model in the background by
``mmrec update``'s code, and the republished model is swapped in like any other.
"""
from __future__ import annotations

import hmac
import logging
import mimetypes
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from mmrec.artifacts import Kind
from mmrec.errors import InputError, MMRecError, UnknownIdError
from mmrec.query import Hit
from mmrec.serve import payload
from mmrec.serve.config import ServeConfig
from mmrec.serve.metrics import Metrics
from mmrec.serve.pool import Pool
from mmrec.version import __version__

log = logging.getLogger("mmrec.serve")
PUBLIC = {"/"}  # the page itself holds no data; it sends the token with every call
COOKIE = "mmrec_token"
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' data: blob:; "
            "style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'")


def create_app(config: ServeConfig) -> FastAPI:
    """Open every directory of ``config`` (errors raise here, before any port opens)."""
    config.check()
    pool = Pool(config.paths)
    app = FastAPI(title="mmrec", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.pool, app.state.config, app.state.metrics = pool, config, Metrics()
    _add_middleware(app, config)
    _add_error_handlers(app)
    _add_routes(app, pool, config)
    return app


def _status(exc: MMRecError) -> int:
    if isinstance(exc, UnknownIdError):
        return 404
    return 413 if isinstance(exc, payload.TooLargeError) else 400


def _error(status: int, message: str, hint: str | None = None) -> JSONResponse:
    return JSONResponse({"error": message, **({"hint": hint} if hint else {})}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MMRecError)
    async def library_error(request: Request, exc: MMRecError) -> JSONResponse:
        return _error(_status(exc), str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                      exc.hint)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _error(500, f"internal error: {type(exc).__name__}")


def _add_middleware(app: FastAPI, config: ServeConfig) -> None:
    metrics: Metrics = app.state.metrics

    @app.middleware("http")
    async def measure_and_guard(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        if config.token and request.url.path not in PUBLIC and not _authorised(request, config.token):
            response: Response = _error(401, "missing or wrong bearer token")
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        metrics.observe(request.method, endpoint, response.status_code, time.perf_counter() - start)
        return response

    if config.cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=config.cors, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])


def _authorised(request: Request, token: str) -> bool:
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    given = given or request.cookies.get(COOKIE, "")
    return hmac.compare_digest(given.encode(), token.encode())


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it grows past ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise payload.TooLargeError(f"the body is {int(declared):,} bytes, over the limit of {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise payload.TooLargeError(f"the body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _add_routes(app: FastAPI, pool: Pool, config: ServeConfig) -> None:
    page = resources.files("mmrec.serve").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_CSP})

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "served": pool.status()}

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(app.state.metrics.render(),
                                 media_type="text/plain; version=0.0.4")

    @app.post("/search")
    async def search(request: Request) -> dict[str, Any]:
        body = payload.parse_json(await _body(request, config.max_body))
        return await run_in_threadpool(_search, pool, config, body)

    @app.post("/recommend")
    async def recommend(request: Request) -> dict[str, Any]:
        body = payload.parse_json(await _body(request, config.max_body))
        return await run_in_threadpool(_recommend, pool, config, body)

    feedback = _Feedback(pool, config)
    app.state.feedback = feedback

    @app.post("/feedback")
    async def post_feedback(request: Request) -> dict[str, Any]:
        body = payload.parse_json(await _body(request, config.max_body))
        return await run_in_threadpool(feedback.take, body)

    @app.get("/items/{item_id:path}/image")
    def item_image(item_id: str, name: str | None = None) -> FileResponse:
        return _media(pool, item_id, name, "image")

    @app.get("/items/{item_id:path}/audio")
    def item_audio(item_id: str, name: str | None = None) -> FileResponse:
        return _media(pool, item_id, name, "audio")

    @app.get("/items/{item_id:path}")
    def item(item_id: str, name: str | None = None) -> dict[str, Any]:
        handle = pool.holding(item_id, name)
        described = handle.item(item_id)
        return {**described, "media": _urls(handle.name, item_id, described["media"])}


class _Feedback:
    """One feedback journal per served model; batches applied off the request thread."""

    def __init__(self, pool: Pool, config: ServeConfig) -> None:
        self.pool, self.config = pool, config
        self.logs: dict[Path, Any] = {}
        self._lock = threading.Lock()

    def log_of(self, path: Path) -> Any:
        from mmrec.recsys.update import FeedbackLog

        with self._lock:
            if path not in self.logs:
                where = self.config.feedback_dir / path.name if self.config.feedback_dir else None
                self.logs[path] = FeedbackLog(path, where, self.config.feedback_batch,
                                              self.config.feedback_seconds)
            return self.logs[path]

    def take(self, body: Any) -> dict[str, Any]:
        """``{"events": [...]}``, a list of events or one event, each ``{user, item,
        rating?, timestamp?}``; ``"name"`` picks the model when several are served."""
        name = body.get("name") if isinstance(body, dict) else None
        events = body.get("events", body) if isinstance(body, dict) else body
        if isinstance(events, dict):
            events = {k: v for k, v in events.items() if k != "name"}
        elif not isinstance(events, list):
            raise InputError('feedback is an event {"user", "item", ...}, a list of them, '
                             'or {"events": [...]}')
        handle = self.pool.pick(Kind.MODEL, name)
        journal = self.log_of(handle.path)
        accepted = journal.append(events)  # all or none: a bad event is a 400
        if journal.due():
            self.flush(journal)
        return {"name": handle.name, "accepted": accepted, "pending": journal.pending()}

    def flush(self, journal: Any) -> None:
        threading.Thread(target=self._apply, args=(journal,), daemon=True).start()

    def _apply(self, journal: Any) -> None:
        try:
            journal.apply()
        except Exception:  # a failed batch stays in the journal; the server goes on
            log.exception("feedback for %s could not be applied", journal.model)

    def flush_due(self) -> None:
        """Apply every journal whose oldest event has waited long enough."""
        for journal in list(self.logs.values()):
            if journal.due():
                self._apply(journal)


def _search(pool: Pool, config: ServeConfig, body: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mmrec-upload-") as uploads:
        name, query = payload.search_query(body, Path(uploads), config)
        handle = pool.pick(Kind.ALIGNER, name)
        try:
            hits = handle.ask(query)
        except InputError as exc:  # name the field, not the upload's temporary file
            raise type(exc)(str(exc).replace(f"{uploads}/", ""), exc.hint) from None
    return _answer(handle, hits)


def _recommend(pool: Pool, config: ServeConfig, body: dict[str, Any]) -> dict[str, Any]:
    name, query = payload.recommend_query(body, config)
    handle = pool.pick(Kind.MODEL, name)
    return _answer(handle, handle.ask(query))


def _answer(handle: Any, hits: list[Hit]) -> dict[str, Any]:
    results = []
    for hit in hits:
        media = handle.item(hit.id)["media"]
        results.append({**hit.as_dict(), "media": _urls(handle.name, hit.id, media)})
    return {"name": handle.name, "results": results}


def _urls(name: str, item_id: str, media: list[str]) -> dict[str, str]:
    return {m: f"/items/{quote(item_id, safe='')}/{m}?name={quote(name, safe='')}" for m in media}


def _media(pool: Pool, item_id: str, name: str | None, modality: str) -> FileResponse:
    path = pool.holding(item_id, name).media(item_id, modality)
    if not path.is_file():
        raise UnknownIdError(f"the {modality} file of item {item_id!r} is gone from the catalog")
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=kind, headers={"X-Content-Type-Options": "nosniff",
                                                        "Cache-Control": "max-age=300"})


def serve(config: ServeConfig) -> None:
    """Open every directory, then answer on ``config.host:config.port`` until stopped."""
    import uvicorn

    app = create_app(config)
    _start_flusher(app.state.feedback, config.feedback_seconds)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False)


def _start_flusher(feedback: _Feedback, seconds: float) -> None:
    """Apply batches that wait their time out even when no new event arrives."""
    def loop() -> None:
        while True:
            time.sleep(max(1.0, seconds / 4))
            feedback.flush_due()

    threading.Thread(target=loop, name="mmrec-feedback", daemon=True).start()
