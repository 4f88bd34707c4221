"""The routes of ``scenestream serve`` (FastAPI).

    POST   /v1/chat/completions          OpenAI chat (SSE with stream: true), the scene beside the answer
    GET    /v1/models                    scenestream + one model per served register adapter
    POST   /v1/scenes                    the LLM-free scene of texts
    GET    /v1/sessions/{id}/history     a session's archived scenes, in order
    GET    /v1/messages/{id}/trace       everything that happened to one message
    POST   /v1/sessions/{id}/replay      a session's scenes answered again
    DELETE /v1/sessions/{id}             a session erased from the archive
    GET    /v1/ws                        WebSocket: texts in; scene, delta, final, error events out
    GET    /v1/scenes/{id}/image.svg|png, /v1/messages/{id}/voice.wav|ogg, /v1/messages/{id}/formula,
           /v1/feed (SSE), /v1/tenant, /view/ (the web view)        scenestream/api/views.py
    GET    /healthz /readyz /metrics     alive; ready; Prometheus

Every error is OpenAI's envelope ``{"error": {"message", "type", "code", "param"}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, AsyncIterator, Optional

from fastapi import Body, Depends, FastAPI, Header, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from scenestream.api.feed import Feed
from scenestream.api.gateway import Busy, Gateway, Pending
from scenestream.api.keys import DEFAULT_TENANT, parse_keys, tenant_for
from scenestream.api.metrics import Metrics
from scenestream.api.openai_types import (
    SCENESTREAM_MODEL,
    APIError,
    Asked,
    ChatCompletionRequest,
    bad_request,
    check_request,
    check_session,
    chunk,
    completion,
    error_body,
    extension,
    finish_reason,
    usage,
)
from scenestream.api.service import Service
from scenestream.api.views import include_views
from scenestream.schemas.records import GenerationParams, LoraOutput, RawText, Scene, new_message_id
from scenestream.schemas.registers import catalogue
from scenestream.settings import Settings, get_settings

log = logging.getLogger(__name__)


class API:
    """What the routes share: settings, keys, the stack behind them, metrics, background tasks."""

    def __init__(self, settings: Settings, service: Optional[Service] = None) -> None:
        self.settings = settings
        self.keys = parse_keys(settings.api_keys)
        self.service = service
        self.metrics = Metrics()
        self.metrics.scene_stage = "resonated" if settings.memory else "formed"
        self.feed = Feed(self.metrics.scene_stage)  # the live feed of the web view (GET /v1/feed)
        self.tasks: set[asyncio.Task] = set()
        self.metrics.watch_stages(lambda: self.service.runners if self.service else [], self.stage_lags)

    def record(self, item: Any) -> None:
        """Every record the gateway reads: its stage timings to the metrics, its event to the live feed."""
        self.metrics.record(item)
        self.feed.publish(item)

    def spawn(self, coro) -> None:
        """Run ``coro`` in the background (a cancel that must go out after its request is gone)."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def cancel(self, message_id: str, tenant: str, reason: str) -> None:
        """Publish a Cancel for ``message_id`` on the control topic (the decoder stops generating it)."""
        from scenestream.client import cancel

        settings = self.service.settings if self.service is not None else self.settings

        async def send() -> None:
            try:
                await cancel(settings, message_id, tenant, reason)
            except Exception:
                log.exception("publishing the cancel of %s failed", message_id)

        self.metrics.cancelled.labels(reason=reason).inc()
        self.spawn(send())

    def stage_lags(self) -> dict[tuple[str, int], int]:
        worker = self.service.worker if self.service is not None else None
        if worker is None:
            return {}
        lags = {}
        try:
            consumer = worker.consumer
            for tp in consumer.assignment():
                read = consumer._read_offset.get(tp)
                lags[(tp.topic, tp.partition)] = max(0, consumer.highwater(tp) - (read + 1 if read is not None else 0))
        except Exception:
            return lags
        return lags

    def gateway(self) -> Gateway:
        if self.service is None:
            raise APIError(503, "no pipeline behind this API", code="not_ready")
        return self.service.require_ready()

    def service_archive(self) -> Any:
        """The scene archive (a context manager; 503 when there is no pipeline or the archive is held)."""
        if self.service is None:
            raise APIError(503, "no pipeline behind this API", code="not_ready")
        return self.service.archive()

    def adapter_for(self, scene: Scene) -> str:
        register = scene.force_register or scene.register
        return register if self.service is not None and register in self.service.adapters() else "base"


def the_api(request: Request) -> API:
    return request.app.state.api


def auth(request: Request) -> str:
    """The tenant of the request's key (401 when keys are set and it has none or a wrong one)."""
    return tenant_for(request.app.state.api.keys, request.headers.get("authorization"))


# ------------------------------------------------------------------------------------------- request bodies


class ScenesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Optional[str] = Field(None, description="One text (or `texts`).")
    texts: Optional[list[str]] = Field(None, max_length=64, description="Up to 64 texts.")
    session: Optional[str] = Field(None, description="Session of the scenes (default: offline).")


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    register: Optional[str] = Field(None, description="Answer every scene with this register's adapter.")
    since_ms: Optional[int] = Field(None, ge=0, description="Only scenes at or after this time (ms since the epoch).")
    limit: int = Field(16, ge=1, le=64, description="At most this many scenes, the earliest first.")


# ------------------------------------------------------------------------------------------- the answer


PUBLISH_TIMEOUT_S = 5.0  # longest a request waits for the broker to take its message


def sse(doc: Any) -> str:
    return f"data: {json.dumps(doc, ensure_ascii=False)}\n\n"


def dead_letter_error(item: Any) -> APIError:
    return APIError(
        422,
        f"the {item.stage} stage refused the message: {item.reason}",
        code="refused_by_pipeline",
    )


async def submit(api: API, record: RawText) -> tuple[Gateway, Pending]:
    """Register the message with the gateway, then publish it (429 when too many wait, 503 on broker trouble)."""
    gateway = api.gateway()
    try:
        waiting = gateway.dispatcher.open(record.message_id, record.session_id, record.tenant)
    except Busy as exc:
        api.metrics.refused.labels(code="too_many_pending").inc()
        raise APIError(
            429,
            f"too many requests waiting: {exc}; retry later",
            code="too_many_pending",
            headers={"Retry-After": str(api.settings.api_retry_after_s)},
        ) from None
    try:  # a broker that is gone would hold the send for the producer's whole request timeout
        await asyncio.wait_for(gateway.publish(record), min(PUBLISH_TIMEOUT_S, api.settings.api_timeout_s))
    except Exception as exc:
        gateway.dispatcher.close(record.message_id)
        reason = "no answer from the broker" if isinstance(exc, TimeoutError) else str(exc)
        raise APIError(
            503,
            f"the message could not be published: {reason}",
            code="broker_unavailable",
            headers={"Retry-After": "5"},
        ) from None
    return gateway, waiting


def raw_for(api: API, text: str, session: Optional[str], tenant: str, register: Optional[str], params=None):
    from scenestream.client import TextRefused, check_size, raw_text

    try:
        check_size(text, api.service.settings if api.service else api.settings)
    except TextRefused as exc:
        raise bad_request(str(exc), param="messages", code="text_too_long") from None
    return raw_text(text, session, tenant=tenant, source="api", register=register, params=params)


async def answer_events(api: API, waiting: Pending, timeout: float, tenant: str) -> AsyncIterator[tuple[str, Any]]:
    """The request's events until its answer (``final``), an error, or ``timeout`` (``("timeout", None)``).
    Leaving early (a client gone) cancels the message; the request is unregistered either way."""
    deadline = time.monotonic() + timeout
    done = timed_out = False
    api.metrics.in_flight.inc()
    first = True
    try:
        while True:
            try:
                kind, item = await waiting.next(deadline)
            except TimeoutError:
                timed_out = True
                yield "timeout", None
                return
            if kind == "delta" and first:
                api.metrics.first_token.observe(time.perf_counter() - waiting.started)
                first = False
            if kind in ("final", "cancelled", "error"):
                done = True
                if kind == "final":
                    api.metrics.answer.observe(time.perf_counter() - waiting.started)
                    api.metrics.tokens.labels(kind="prompt").inc(item.prompt_tokens)
                    api.metrics.tokens.labels(kind="completion").inc(item.completion_tokens)
                yield kind, item
                return
            yield kind, item
    finally:
        api.metrics.in_flight.dec()
        if api.service is not None and api.service.gateway is not None:
            api.service.gateway.dispatcher.close(waiting.message_id)
        if not done:
            api.cancel(waiting.message_id, tenant, "timeout" if timed_out else "client went away")


async def stream_chat(api: API, asked: Asked, record: RawText, waiting: Pending) -> AsyncIterator[str]:
    created = int(time.time())
    mid, model = record.message_id, asked.model
    sent = ""
    opened = False
    ext: Optional[dict] = None

    def opening(scene: Optional[Scene]) -> str:
        nonlocal ext
        ext = extension(mid, record.session_id, scene, adapter=api.adapter_for(scene) if scene else None)
        role = {"role": "assistant", "content": ""}
        return sse(chunk(model, mid, created, delta=role, ext=ext, include_usage=asked.include_usage))

    events = answer_events(api, waiting, api.settings.api_timeout_s, record.tenant)
    try:
        async for kind, item in events:
            if kind == "scene":
                opened = True
                yield opening(item)
            elif kind == "delta":
                if not opened:
                    opened = True
                    yield opening(None)
                sent += item.text
                yield sse(chunk(model, mid, created, delta={"content": item.text}, include_usage=asked.include_usage))
            elif kind == "final":
                if not opened:
                    yield opening(None)
                rest = item.text[len(sent) :] if item.text.startswith(sent) else ""
                if rest:
                    yield sse(chunk(model, mid, created, delta={"content": rest}, include_usage=asked.include_usage))
                final_ext = {**(ext or {}), **extension(mid, record.session_id, None, output=item)}
                yield sse(
                    chunk(
                        model,
                        mid,
                        created,
                        finish=finish_reason(item),
                        ext=final_ext,
                        include_usage=asked.include_usage,
                    )
                )
                if asked.include_usage:
                    yield sse(chunk(model, mid, created, usage_of=usage(item), choices=False))
                yield "data: [DONE]\n\n"
            elif kind == "timeout":
                api.metrics.refused.labels(code="timeout").inc()
                yield sse(error_body(f"no answer within {api.settings.api_timeout_s:g} s", "timeout", "timeout"))
            elif kind == "cancelled":
                yield sse(error_body("the message was cancelled before it was answered", "cancelled", "cancelled"))
            elif kind == "error":
                err = dead_letter_error(item)
                yield sse(err.body())
    finally:
        await events.aclose()


async def collect_chat(api: API, asked: Asked, record: RawText, waiting: Pending, request: Request) -> dict:
    """The whole answer of a non-streamed request; a client that goes away cancels it."""
    scene: Optional[Scene] = None

    async def answer() -> dict:
        nonlocal scene
        events = answer_events(api, waiting, api.settings.api_timeout_s, record.tenant)
        async with contextlib.aclosing(events):  # its clean-up (unregister, cancel) now, not when collected
            async for kind, item in events:
                if kind == "scene":
                    scene = item
                elif kind == "final":
                    ext = extension(record.message_id, record.session_id, scene, output=item)
                    return completion(asked.model, record.message_id, item, ext)
                elif kind == "timeout":
                    api.metrics.refused.labels(code="timeout").inc()
                    raise APIError(504, f"no answer within {api.settings.api_timeout_s:g} s", code="timeout")
                elif kind == "cancelled":
                    raise APIError(409, "the message was cancelled before it was answered", code="cancelled")
                elif kind == "error":
                    raise dead_letter_error(item)
        raise APIError(504, "no answer", code="timeout")

    async def gone() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    answering = asyncio.ensure_future(answer())
    watching = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({answering, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not answering.done():
            answering.cancel()  # the client went away: answer_events cancels the message
            with contextlib.suppress(BaseException):
                await answering
        watching.cancel()
    if answering.cancelled():
        raise APIError(408, "the client went away; the message was cancelled", code="client_gone")
    return answering.result()


# ------------------------------------------------------------------------------------------- the app


def create_app(settings: Optional[Settings] = None, service: Optional[Service] = None) -> FastAPI:
    """The API; with ``service`` None, a :class:`Service` for ``settings`` started with the app."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        api: API = app.state.api
        if api.service is None:
            api.service = Service(settings, on_record=api.record)
        api.service.start()
        try:
            yield
        finally:
            await api.service.stop()
            for task in list(api.tasks):
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(task, 5)

    app = FastAPI(
        title="scenestream",
        version="0.1.0",
        description="An OpenAI-compatible chat API over the scenestream pipeline; the scene beside each answer.",
        lifespan=lifespan,
    )
    app.state.api = API(settings, service)
    app.add_middleware(CountRequests)
    include_views(app)

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        err = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "path", "query", "header")]
        param = ".".join(loc) or None
        message = f"{param}: {err.get('msg')}" if param else str(err.get("msg"))
        return JSONResponse(error_body(message, "invalid_request_error", "invalid_value", param), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = APIError(exc.status_code, str(exc.detail), code=str(exc.detail).lower().replace(" ", "_"))
        return JSONResponse(err.body(), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}", "server_error", "internal"), 500)

    # --------------------------------------------------------------------------------------- chat

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(
        request: Request,
        body: ChatCompletionRequest,
        tenant: str = Depends(auth),
        x_session_id: Optional[str] = Header(None),
    ):
        """OpenAI chat completions; `model` is `scenestream` (the scene chooses the register) or a register."""
        api = the_api(request)
        asked = check_request(body, catalogue().names, x_session_id)
        record = raw_for(api, asked.text, asked.session, tenant, asked.register, asked.params)
        gateway, waiting = await submit(api, record)
        if asked.stream:

            def left_unanswered() -> None:
                # a client gone before the stream began never runs the stream's own clean-up
                if gateway.dispatcher.pending.get(record.message_id) is waiting:
                    gateway.dispatcher.close(record.message_id)
                    api.cancel(record.message_id, tenant, "client went away")

            return StreamingResponse(
                stream_chat(api, asked, record, waiting),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Session-Id": record.session_id},
                background=BackgroundTask(left_unanswered),
            )
        doc = await collect_chat(api, asked, record, waiting, request)
        return JSONResponse(doc, headers={"X-Session-Id": record.session_id})

    @app.get("/v1/models")
    async def models(request: Request, tenant: str = Depends(auth)) -> dict:
        """`scenestream` and one model per register of the catalogue, the base model as parent and root; each
        register's model carries a ``scenestream`` object: its adapter version, and whether the decoder of this
        process has it loaded; in a gateway whose decoders run elsewhere, which decoder workers serve it and which
        version each (``served_by``, from their reports on the decoder-status topic)."""
        api = the_api(request)
        service = api.service
        base = service.base_model_name() if service else "base"
        created = int(service.started_at if service else time.time())
        about = {row["register"]: row for row in service.registers()} if service else {}
        if any(row["loaded"] is None for row in about.values()):  # a gateway: the decoders report elsewhere
            from scenestream.registry import decoder_statuses

            statuses = await decoder_statuses(api.gateway().settings)
            for name, row in about.items():
                serving = [
                    {"worker": s.worker, "version": s.adapters[name] or None} for s in statuses if name in s.adapters
                ]
                row.update(loaded=bool(serving), served_by=serving)
        ids = [(SCENESTREAM_MODEL, None)] + [(r, base) for r in about]  # every register: its model forces it
        data = [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "scenestream",
                "root": base,
                "parent": parent,
                **({"scenestream": about[name]} if name in about else {}),
            }
            for name, parent in ids
        ]
        return {"object": "list", "data": data}

    # --------------------------------------------------------------------------------------- scenes and audit

    @app.post("/v1/scenes")
    async def scenes(request: Request, body: ScenesRequest = Body(...), tenant: str = Depends(auth)) -> dict:
        """The LLM-free scene of each text (tokenizer + scene builder in this process, no broker)."""
        from scenestream.offline import scenes_for
        from scenestream.schemas.codec import SchemaError

        api = the_api(request)
        texts = ([body.text] if body.text is not None else []) + list(body.texts or [])
        if not texts:
            raise bad_request("give `text` or `texts`", param="text")
        session = check_session(body.session, "session") if body.session is not None else "offline"
        raws = []
        for i, text in enumerate(texts):
            if not text.strip():
                raise bad_request(f"text {i} is empty or only whitespace", param="texts", code="empty_text")
            raws.append(raw_for(api, text, session, tenant, None))
        try:
            built = await asyncio.to_thread(scenes_for, raws, api.settings)
        except SchemaError as exc:
            raise bad_request(str(exc), param="text") from None
        return {"object": "list", "data": [scene.model_dump(mode="json") for scene in built]}

    def path_session(session_id: str) -> str:
        return check_session(session_id, "session_id")

    @app.get("/v1/sessions/{session_id}/history")
    async def history(
        request: Request, session_id: str, since_ms: Optional[int] = None, tenant: str = Depends(auth)
    ) -> dict:
        """A session's archived scenes (with their answers) in order."""
        api = the_api(request)
        session_id = path_session(session_id)
        with api.service_archive() as archive:
            rows = await asyncio.to_thread(archive.history, session_id, tenant, since_ms)
        return {"object": "list", "session": session_id, "data": rows}

    @app.get("/v1/messages/{message_id}/trace")
    async def trace(request: Request, message_id: str, tenant: str = Depends(auth)) -> dict:
        """Everything that happened to one message: its archived scene, and its records still on the topics."""
        from scenestream.audit import archived_scene, from_topics
        from scenestream.schemas.codec import to_jsonable

        api = the_api(request)
        gateway = api.gateway()
        if not message_id.strip() or len(message_id) > 256:
            raise bad_request("message_id is 1 to 256 characters", param="message_id")
        with api.service_archive() as archive:
            archived = await asyncio.to_thread(archived_scene, archive, message_id, gateway.settings)
        if archived is not None and archived.get("tenant", DEFAULT_TENANT) != tenant:
            archived = None
        found = await from_topics(gateway.settings, message_id)
        owned = archived is not None
        topics: dict[str, list] = {}
        for topic, entries in found.items():
            for entry in entries:
                record_tenant = getattr(entry["record"], "tenant", None)
                if record_tenant is not None and record_tenant != tenant:
                    continue
                owned = owned or record_tenant == tenant
                topics.setdefault(topic, []).append(to_jsonable({**entry, "record": entry["record"]}))
        if not owned:
            raise APIError(404, f"no message {message_id} in this tenant", code="message_not_found")
        timings: dict = {}
        for entries in topics.values():
            for entry in entries:
                timings.update(entry["record"].get("timings_ms", {}) or {})
        if archived:
            timings.update(archived.get("timings_ms", {}))
            timings.update({f"answer.{k}": v for k, v in (archived.get("answer_timings_ms") or {}).items()})
        return {"message_id": message_id, "archive": archived, "topics": topics, "timings_ms": timings}

    @app.post("/v1/sessions/{session_id}/replay")
    async def replay(
        request: Request,
        session_id: str,
        body: Optional[ReplayRequest] = Body(None),
        tenant: str = Depends(auth),
    ) -> dict:
        """A session's archived scenes answered again by the running decoder (the archive is not written)."""
        api = the_api(request)
        body = body or ReplayRequest()
        session_id = path_session(session_id)
        if body.register is not None and body.register not in catalogue():
            raise bad_request(catalogue().unknown(body.register), param="register")
        gateway = api.gateway()
        with api.service_archive() as archive:
            rows = await asyncio.to_thread(archive.history, session_id, tenant, body.since_ms)
        if not rows:
            raise APIError(404, f"no archived scenes for session {session_id!r}", code="session_not_found")
        rows = rows[: body.limit]
        waiting: list[tuple[dict, Pending]] = []
        try:
            for row in rows:
                scene = Scene.model_validate(row)
                again = scene.model_copy(
                    update={
                        "message_id": f"replay-{new_message_id()}",
                        "replay_of": scene.message_id,
                        "stage": gateway.dispatcher.wanted_stage,
                        "force_register": body.register or scene.force_register,
                    }
                )
                try:
                    pending = gateway.dispatcher.open(again.message_id, again.session_id, tenant)
                except Busy as exc:
                    raise APIError(
                        429,
                        f"too many requests waiting: {exc}",
                        code="too_many_pending",
                        headers={"Retry-After": str(api.settings.api_retry_after_s)},
                    ) from None
                waiting.append((row, pending))
                await gateway.publish_scene(again)
            out = []
            deadline = time.monotonic() + api.settings.api_timeout_s
            for row, pending in waiting:
                new: Optional[LoraOutput] = None
                while new is None:
                    try:
                        kind, item = await pending.next(deadline)
                    except TimeoutError:
                        raise APIError(504, "the replay was not answered in time", code="timeout") from None
                    if kind == "final":
                        new = item
                    elif kind in ("cancelled", "error"):
                        break
                out.append(
                    {
                        "scene_id": row["scene_id"],
                        "message_id": row["message_id"],
                        "ts_ms": row["ts_ms"],
                        "text": row["text"],
                        "old": {"register": row.get("answer_register"), "text": row.get("answer")},
                        "new": None
                        if new is None
                        else {
                            "register": new.register,
                            "adapter": new.adapter,
                            "text": new.text,
                            "finish_reason": new.finish_reason,
                            "completion_tokens": new.completion_tokens,
                        },
                    }
                )
            return {"object": "list", "session": session_id, "data": out}
        finally:
            for _, pending in waiting:
                gateway.dispatcher.close(pending.message_id)

    @app.delete("/v1/sessions/{session_id}")
    async def erase(request: Request, session_id: str, tenant: str = Depends(auth)) -> dict:
        """Erase a session's scenes, their answers and the echoes of them from the archive; the counts."""
        api = the_api(request)
        session_id = path_session(session_id)
        with api.service_archive() as archive:
            counts = await asyncio.to_thread(archive.erase_session, session_id, tenant)
        return {
            "object": "session.deleted",
            "id": session_id,
            "deleted": True,
            "erased": counts,
            "topics_retention_hours": api.settings.retention_hours,
        }

    # --------------------------------------------------------------------------------------- WebSocket

    @app.websocket("/v1/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket_session(websocket, websocket.app.state.api)

    # --------------------------------------------------------------------------------------- health

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        api = the_api(request)
        if api.service is None:
            return JSONResponse({"ready": False}, status_code=503)
        ok, checks = await api.service.probe()
        return JSONResponse({"ready": ok, **checks}, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics(request: Request) -> PlainTextResponse:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return PlainTextResponse(generate_latest(the_api(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


# ------------------------------------------------------------------------------------------- WebSocket


class WSMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = "message"
    text: Optional[str] = None
    session: Optional[str] = None
    register: Optional[str] = None
    message_id: Optional[str] = None
    max_tokens: Optional[int] = None
    temperature: Optional[float] = None


async def websocket_session(websocket: WebSocket, api: API) -> None:
    """Texts in, events out: ``accepted``, ``scene``, ``delta``, ``final`` and ``error`` per message (each names
    its ``message_id``); ``{"type": "cancel", "message_id"}`` cancels one. Several messages at once."""
    header = websocket.headers.get("authorization")
    token = websocket.query_params.get("api_key")
    try:
        tenant = tenant_for(api.keys, header or (f"Bearer {token}" if token else None))
    except APIError as exc:
        await websocket.close(code=1008, reason=exc.message[:120])
        return
    await websocket.accept()
    lock = asyncio.Lock()
    running: dict[str, asyncio.Task] = {}

    async def send(doc: dict) -> None:
        async with lock:
            await websocket.send_text(json.dumps(doc, ensure_ascii=False))

    async def error(exc: APIError, message_id: Optional[str] = None) -> None:
        await send({"type": "error", "message_id": message_id, **exc.body()})

    async def pump(record: RawText, waiting: Pending) -> None:
        mid = record.message_id
        events = answer_events(api, waiting, api.settings.api_timeout_s, tenant)
        try:
            async for kind, item in events:
                if kind == "scene":
                    ext = extension(mid, record.session_id, item, adapter=api.adapter_for(item))
                    await send({"type": "scene", **ext})
                elif kind == "delta":
                    await send({"type": "delta", "message_id": mid, "seq": item.seq, "text": item.text})
                elif kind == "final":
                    await send(
                        {
                            "type": "final",
                            "message_id": mid,
                            "text": item.text,
                            "finish_reason": finish_reason(item),
                            "usage": usage(item),
                            "scenestream": extension(mid, record.session_id, None, output=item),
                        }
                    )
                elif kind == "timeout":
                    await error(
                        APIError(504, f"no answer within {api.settings.api_timeout_s:g} s", code="timeout"), mid
                    )
                elif kind == "cancelled":
                    await error(APIError(409, "the message was cancelled", code="cancelled"), mid)
                elif kind == "error":
                    await error(dead_letter_error(item), mid)
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket is gone: answer_events cancels the message
            log.debug("websocket send failed", exc_info=True)
        finally:
            running.pop(mid, None)
            await events.aclose()

    async def handle(raw: str) -> None:
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError as exc:
            await error(bad_request(f"not JSON: {exc}", code="invalid_json"))
            return
        if not isinstance(doc, dict):
            await error(bad_request("a message is a JSON object", code="invalid_json"))
            return
        try:
            msg = WSMessage.model_validate(doc)
        except Exception as exc:
            err = exc.errors()[0] if hasattr(exc, "errors") else {"loc": (), "msg": str(exc)}
            param = ".".join(str(p) for p in err["loc"])
            await error(bad_request(f"{param}: {err['msg']}", param=param))
            return
        if msg.type == "cancel":
            task = running.get(msg.message_id or "")
            if task is None:
                await error(APIError(404, f"no message {msg.message_id!r} running here", code="message_not_found"))
                return
            task.cancel()  # answer_events publishes the cancel
            await error(APIError(409, "cancelled by the client", code="cancelled"), msg.message_id)
            return
        if msg.type != "message":
            await error(bad_request(f"unknown type {msg.type!r}: message or cancel", param="type"))
            return
        try:
            if msg.text is None or not msg.text.strip():
                raise bad_request("text is empty or only whitespace", param="text", code="empty_text")
            if msg.register is not None and msg.register not in catalogue():
                raise APIError(404, f"no register {msg.register!r}", code="model_not_found", param="register")
            session = check_session(msg.session, "session") if msg.session is not None else None
            try:
                params = GenerationParams(max_new_tokens=msg.max_tokens, temperature=msg.temperature)
            except Exception as exc:
                raise bad_request(f"bad generation parameters: {exc}", param="max_tokens") from None
            record = raw_for(api, msg.text, session, tenant, msg.register, params)
            _, waiting = await submit(api, record)
        except APIError as exc:
            await error(exc)
            return
        await send({"type": "accepted", "message_id": record.message_id, "session": record.session_id})
        running[record.message_id] = asyncio.create_task(pump(record, waiting))

    try:
        while True:
            await handle(await websocket.receive_text())
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client went away (RuntimeError: a frame after the close)
    finally:
        for task in list(running.values()):
            task.cancel()


class CountRequests:
    """Counts requests by route template and status (pure ASGI: a streamed response is not buffered)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}
        api = scope["app"].state.api if "app" in scope else None
        length = dict(scope.get("headers") or []).get(b"content-length", b"0")
        limit = api.settings.max_request_bytes if api is not None else 1024 * 1024
        if length.isdigit() and int(length) > limit:  # refused before it is read (SCENESTREAM_MAX_REQUEST_BYTES)
            body = error_body(f"the request body is over {limit} bytes", "invalid_request_error", "too_large")
            response = JSONResponse(body, status_code=413)
            await response(scope, receive, send)
            if api is not None:
                api.metrics.requests.labels(route="unmatched", status="413").inc()
            return

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            if api is not None:
                api.metrics.requests.labels(route=path, status=str(status["code"])).inc()
