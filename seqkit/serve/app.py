"""The HTTP service over an exported model (FastAPI on the torch-free runtime).

Routes: ``GET /`` (the demo page), ``GET /healthz``, ``GET /v1/model``, ``POST /v1/translate``
(seq2seq models), ``POST /v1/generate`` (language models), plus FastAPI's ``/openapi.json``
and ``/docs``. Every error is JSON ``{"error": {"code", "message", "details"}}``:

====  =======================================================================================
400   malformed JSON (``bad_json``), text that is not valid Unicode (``bad_text``), an endpoint
      the model's kind does not serve (``wrong_model_kind``), a Host not allowed (``bad_host``)
404   unknown path; 405 wrong method; 415 a body not sent as ``application/json``
413   body over ``max_body_bytes`` (``body_too_large``), more than ``max_batch`` texts
      (``too_many_texts``), a text or prompt over ``max_chars`` (``text_too_long``)
422   a body that does not match the schema, or a search option out of range (``invalid_request``)
503   the queue holds ``max_queue`` requests already (``overloaded``; ``Retry-After: 1``)
500   the model failed (``model_error``) or an unexpected error (``internal_error``): still JSON
====  =======================================================================================
"""

from __future__ import annotations

import math
import time
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, AsyncIterator, Sequence

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seqkit import __version__
from seqkit.errors import InputError, SeqkitError, shorten
from seqkit.inference import TranslationResult, clean_prompt, clean_text
from seqkit.plot import attention_labels
from seqkit.serve.batcher import Batcher, Overloaded
from seqkit.serve.page import PAGE
from seqkit.serve.schemas import (
    AttentionMatrix, ErrorResponse, GenerateRequest, GenerateResponse, Health, Hypothesis, ServeLimits,
    TranslateRequest, TranslateResponse, Translation,
)
from seqkit.web import ISOLATION_HEADERS, MEDIA_TYPES, site_files

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 413, 415, 422, 500, 503)
}


class ServeError(Exception):
    """An error answered as JSON with ``status``."""

    def __init__(self, status: int, code: str, message: str, details: list[Any] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def error_response(status: int, code: str, message: str, details: list[Any] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=headers)


class BodyLimit:
    """Pure ASGI middleware: refuses a body over ``max_bytes`` with 413 before the app reads it.

    The body is read here (Content-Length first, then counted, so chunked uploads are bounded
    too) and replayed to the app; requests without a body pass through untouched.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, "body_too_large", f"request body over {self.max_bytes} bytes")
        await response(scope, receive, send)


class HostCheck:
    """Pure ASGI middleware: answers 400 (JSON) to a request whose Host header is not one of
    ``allowed`` (port ignored), as Starlette's TrustedHostMiddleware does in plain text. Guards a
    server on 127.0.0.1 against DNS rebinding, and one behind a proxy against spoofed hosts."""

    def __init__(self, app: ASGIApp, allowed: Sequence[str]):
        self.app, self.allowed = app, {h.lower() for h in allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name.lower() not in self.allowed:
                response = error_response(400, "bad_host", f"Host header {shorten(host)} is not served here")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _translation(result: TranslationResult, model: Any) -> Translation:
    attention = None
    if result.attention is not None:
        src, tgt = attention_labels(result, model.src_tokenizer, model.tgt_tokenizer)
        weights = [[round(float(w), 4) for w in row] for row in result.attention]
        attention = AttentionMatrix(src_tokens=src, tgt_tokens=tgt, weights=weights)
    return Translation(text=result.text, log_prob=_finite(result.log_prob), score=_finite(result.score),
                       attention=attention, warnings=result.warnings,
                       n_best=[Hypothesis(text=c.text, log_prob=_finite(c.log_prob), score=_finite(c.score))
                               for c in result.n_best])


def _finite(x: float) -> float:
    """JSON has no infinity; a hypothesis that only reached eos by force may score -inf."""
    return float(x) if math.isfinite(x) else -1e30


def _run_translate(model: Any, overrides: dict[str, Any], attention: bool, texts: list[str]) -> list[Translation]:
    """In the model thread: one Translator call over the texts of every merged request."""
    results = model.translator(**overrides).translate(texts, return_attention=attention)
    return [_translation(r, model) for r in results]


def _run_generate(model: Any, request: GenerateRequest, prompts: Sequence[str]) -> list[str]:
    generator = model.generator()
    return [generator.tokenizer.decode(generator.generate_ids(
        p, max_tokens=request.max_tokens, temperature=request.temperature, top_k=request.top_k,
        top_p=request.top_p, seed=request.seed)) for p in prompts]


def _check_text(text: str, where: str, limits: ServeLimits, *, prompt: bool = False) -> str:
    if len(text) > limits.max_chars:
        raise ServeError(413, "text_too_long", f"{where}: {len(text)} characters, over the limit of {limits.max_chars}")
    try:
        return clean_prompt(text) if prompt else clean_text(text, where)
    except InputError as exc:
        raise ServeError(400, "bad_text", str(exc)) from None


def _search_options(model: Any, overrides: dict[str, Any], limits: ServeLimits) -> None:
    if overrides.get("beam_size", 0) > limits.max_beam_size:
        raise ServeError(422, "invalid_request", f"beam_size {overrides['beam_size']} is over the limit of {limits.max_beam_size}")
    try:
        model.search_config(**overrides)
    except InputError as exc:
        raise ServeError(422, "invalid_request", str(exc)) from None


def _require(model: Any, kind: str) -> None:
    if model.config.model_kind != kind:
        raise ServeError(400, "wrong_model_kind", f"this server holds a {model.config.task} model "
                         f"({model.config.model_kind}); /v1/translate serves seq2seq models, /v1/generate language models")


def _safe_details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Validation errors as JSON can carry them: the input echoed as a bounded repr (NaN,
    infinity and lone surrogates would make the error response itself fail), no ctx objects."""
    out = []
    for err in list(errors)[:10]:
        item = {"loc": [p if isinstance(p, int) else str(p)[:60] for p in err.get("loc", ())],
                "msg": str(err.get("msg", ""))[:200], "type": str(err.get("type", ""))}
        if "input" in err:
            item["input"] = shorten(err["input"])
        out.append(item)
    return out


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServeError)
    async def _serve_error(_: Request, exc: ServeError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(Overloaded)
    async def _overloaded(_: Request, exc: Overloaded) -> JSONResponse:
        return error_response(503, "overloaded", str(exc), headers={"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        content_type = request.headers.get("content-type", "")
        if request.method == "POST" and "json" not in content_type:
            return error_response(415, "unsupported_media_type",
                                  f"send the body as JSON with Content-Type: application/json (got {content_type or 'none'!r})")
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "bad_json", "the request body is not valid JSON", _safe_details(errors))
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p)[:60] for p in first.get("loc", ()))
        return error_response(422, "invalid_request", f"{where}: {first.get('msg')}", _safe_details(errors))

    @app.exception_handler(InputError)
    async def _bad_input(_: Request, exc: InputError) -> JSONResponse:
        return error_response(400, "bad_text", str(exc))

    @app.exception_handler(SeqkitError)
    async def _model_error(_: Request, exc: SeqkitError) -> JSONResponse:
        return error_response(500, "model_error", str(exc))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        # Still JSON, as docs/serving.md promises; the traceback goes to the server log.
        return error_response(500, "internal_error", f"internal error ({type(exc).__name__}); see the server log")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, f"http_{exc.status_code}")
        return error_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))


def _install_guards(app: FastAPI, limits: ServeLimits, allowed_hosts: Sequence[str] | None) -> None:
    """The Host check (added last, so it runs first), the body-size limit and the JSON error handlers."""
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    if allowed_hosts:
        app.add_middleware(HostCheck, allowed=allowed_hosts)
    _install_error_handlers(app)


def _install_browser_site(app: FastAPI, model: Any) -> bool:
    """``GET /browser/...``: the `seqkit web` site of the served model, so the page can offer
    "run in this browser". Only where the JS runtime is installed (js/node_modules) and the model
    is seq2seq; False otherwise. Only the site's own files are served, with the isolation headers
    onnxruntime-web needs for threads."""
    try:
        files = site_files(model.model_dir)
    except SeqkitError:
        return False

    @app.get("/browser/{path:path}", include_in_schema=False)
    async def browser_site(path: str) -> Response:
        source = files.get(path or "index.html")
        if source is None:
            raise StarletteHTTPException(404, f"/browser/{shorten(path)}: not part of the site")
        media = MEDIA_TYPES.get(Path(path or "index.html").suffix, "application/octet-stream")
        if isinstance(source, bytes):
            return Response(source, media_type=media, headers=ISOLATION_HEADERS)
        return FileResponse(source, media_type=media, headers=ISOLATION_HEADERS)

    return True


def create_app(model: Any, limits: ServeLimits | None = None, allowed_hosts: Sequence[str] | None = None) -> FastAPI:
    """The FastAPI app over ``model`` (a :class:`seqkit.runtime.RuntimeModel`); ``allowed_hosts``:
    the Host header names it answers (None: any)."""
    limits = limits or ServeLimits()
    batcher = Batcher(max_items=limits.batch_texts, max_queue=limits.max_queue)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="seqkit", version=__version__, lifespan=lifespan,
                  description=f"seqkit {model.config.task} model `{model.model_dir.name}` on onnxruntime.")
    app.state.model, app.state.limits, app.state.batcher = model, limits, batcher
    _install_guards(app, limits, allowed_hosts)
    browser = model.config.model_kind == "seq2seq" and _install_browser_site(app, model)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @app.get("/healthz", response_model=Health, summary="Liveness; answered without waiting for the model")
    async def healthz() -> Health:
        return Health(status="ok", model_kind=model.config.model_kind, queued=batcher.depth,
                      in_flight=batcher.in_flight, requests_done=batcher.requests, model_calls=batcher.calls)

    @app.get("/v1/model", summary="The exported config.json and manifest.json, and the request limits")
    async def model_info() -> dict[str, Any]:
        return {"name": model.model_dir.name, "config": model.config.model_dump(mode="json"),
                "manifest": model.manifest.model_dump(mode="json"), "limits": limits.model_dump(),
                "browser": browser}

    @app.post("/v1/translate", response_model=TranslateResponse, responses=ERRORS,
              summary="Translate (or summarize) a batch of texts with a seq2seq model")
    async def translate(request: TranslateRequest) -> TranslateResponse:
        start = time.perf_counter()
        _require(model, "seq2seq")
        if len(request.texts) > limits.max_batch:
            raise ServeError(413, "too_many_texts", f"{len(request.texts)} texts, over the limit of {limits.max_batch}")
        texts = [_check_text(t, f"texts[{i}]", limits) for i, t in enumerate(request.texts)]
        overrides = request.search_overrides()
        _search_options(model, overrides, limits)
        key = ("translate", tuple(sorted(overrides.items())), request.attention)
        results = await batcher.submit(key, texts, partial(_run_translate, model, overrides, request.attention))
        return TranslateResponse(translations=results, elapsed_ms=round(1000 * (time.perf_counter() - start), 2))

    @app.post("/v1/generate", response_model=GenerateResponse, responses=ERRORS,
              summary="Sample a continuation of a prompt from a language model")
    async def generate(request: GenerateRequest) -> GenerateResponse:
        start = time.perf_counter()
        _require(model, "lm")
        prompt = _check_text(request.prompt, "prompt", limits, prompt=True)
        if request.max_tokens is not None and request.max_tokens > limits.max_tokens:
            raise ServeError(422, "invalid_request", f"max_tokens {request.max_tokens} is over the limit of {limits.max_tokens}")
        options = request.model_dump(exclude={"prompt", "max_tokens"}, exclude_none=True)
        _search_options(model, options, limits)
        [continuation] = await batcher.submit(None, [prompt], partial(_run_generate, model, request))
        return GenerateResponse(text=prompt + continuation, continuation=continuation,
                                elapsed_ms=round(1000 * (time.perf_counter() - start), 2))

    return app
