"""The routes of ``scenestream serve`` that show a scene rather than answer it, and the web view.

    GET /v1/scenes/{id}/image.svg|.png       the scene's field drawn (``?scale=`` for PNG, 0.25 to 4)
    GET /v1/messages/{id}/voice.wav|.ogg     the message's answer spoken (espeak-ng), paced by its field
    GET /v1/messages/{id}/formula            the scene as one line, and that line parsed back into its parts
    GET /v1/feed                             SSE: the tenant's scenes and answers live (scenestream/api/feed.py)
    GET /v1/tenant                           the tenant of the key
    GET /  → /view/                          the web view (static files in scenestream/api/web/, no build step)

Scenes and answers come from the scene archive, so they exist once the memory stage stored them; every route
works inside the key's tenant, and another tenant's scene is a 404 like one that does not exist. Included by
:func:`scenestream.api.app.create_app` through :func:`include_views`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from scenestream.api.keys import DEFAULT_TENANT
from scenestream.api.openai_types import APIError, bad_request

WEB = Path(__file__).with_name("web")
IMAGE_FORMATS = {"svg": "image/svg+xml; charset=utf-8", "png": "image/png"}
VOICE_FORMATS = {"wav": "audio/wav", "ogg": "audio/ogg"}
FEED_KEEPALIVE_S = 15.0
# a picture opened on its own runs nothing: no scripts, no fetches, only its own inline styles
OUTPUT_HEADERS = {
    "Cache-Control": "no-store",  # an erased session's pictures and voices are gone, not cached
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
}

router = APIRouter()


def the_api(request: Request) -> Any:
    return request.app.state.api


def auth(request: Request) -> str:
    from scenestream.api.keys import tenant_for

    return tenant_for(request.app.state.api.keys, request.headers.get("authorization"))


def check_id(value: str, name: str) -> str:
    if not value.strip() or len(value) > 256:
        raise bad_request(f"{name} is 1 to 256 characters, not blank", param=name)
    return value


def check_format(fmt: str, allowed: dict[str, str], what: str) -> str:
    fmt = fmt.lower()
    if fmt not in allowed:
        raise bad_request(
            f"the {what}'s format {fmt!r} is not one of {', '.join(allowed)}", param="format", code="unsupported_format"
        )
    return fmt


async def scene_by_id(api: Any, scene_id: str, tenant: str) -> Any:
    """The archived scene ``scene_id`` of ``tenant`` (a Scene), or 404."""
    from scenestream.schemas.records import Scene

    with api.service_archive() as archive:
        payload = await asyncio.to_thread(archive.get, scene_id)
    if payload is None or payload.get("tenant", DEFAULT_TENANT) != tenant:
        raise APIError(404, f"no scene {scene_id} in this tenant", code="scene_not_found")
    return Scene.model_validate(payload)


async def message_payload(api: Any, message_id: str, tenant: str) -> dict:
    """The archived scene of ``message_id`` (its payload, with the answer once memory linked it), or 404."""
    from scenestream.audit import archived_scene

    settings = api.service.settings if api.service is not None else api.settings
    with api.service_archive() as archive:
        payload = await asyncio.to_thread(archived_scene, archive, message_id, settings)
    if payload is None or payload.get("tenant", DEFAULT_TENANT) != tenant:
        raise APIError(404, f"no archived scene of message {message_id} in this tenant", code="message_not_found")
    return payload


@router.get("/v1/tenant")
async def tenant_of_key(request: Request, tenant: str = Depends(auth)) -> dict:
    """The tenant the key works in (``default`` when the server has no keys)."""
    return {"object": "tenant", "tenant": tenant, "keys": bool(the_api(request).keys)}


@router.get("/v1/scenes/{scene_id}/image.{fmt}", response_class=Response)
async def scene_image(
    request: Request,
    scene_id: str,
    fmt: str,
    scale: float = Query(1.0, ge=0.25, le=4.0, description="PNG only: pixels per SVG unit."),
    tenant: str = Depends(auth),
) -> Response:
    """The scene's field drawn (``scenestream.outputs.image``): SVG, or PNG at ``scale``; the same scene gives
    the same bytes."""
    from scenestream.outputs.image import ImageUnavailable, scene_png, scene_svg

    fmt = check_format(fmt, IMAGE_FORMATS, "image")
    scene = await scene_by_id(the_api(request), check_id(scene_id, "scene_id"), tenant)
    try:
        data = scene_svg(scene).encode("utf-8") if fmt == "svg" else await asyncio.to_thread(scene_png, scene, scale)
    except ImageUnavailable as exc:
        raise APIError(503, str(exc), code="image_unavailable") from None
    return Response(data, media_type=IMAGE_FORMATS[fmt], headers=OUTPUT_HEADERS)


@router.get("/v1/messages/{message_id}/voice.{fmt}", response_class=Response)
async def message_voice(request: Request, message_id: str, fmt: str, tenant: str = Depends(auth)) -> Response:
    """The message's answer spoken by espeak-ng in its scene's language, paced by its field (WAV or Ogg)."""
    from scenestream.outputs.voice import SpeechFailed, SpeechUnavailable, speak
    from scenestream.schemas.records import Scene

    fmt = check_format(fmt, VOICE_FORMATS, "voice")
    payload = await message_payload(the_api(request), check_id(message_id, "message_id"), tenant)
    answer = payload.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        raise APIError(404, f"message {message_id} has no answer in the archive yet", code="answer_not_found")
    scene = Scene.model_validate(payload)
    try:
        data = await asyncio.to_thread(speak, answer, scene.lang, scene.field, fmt)
    except SpeechUnavailable as exc:
        raise APIError(503, str(exc), code="speech_unavailable") from None
    except SpeechFailed as exc:
        raise APIError(500, str(exc), code="speech_failed") from None
    return Response(data, media_type=VOICE_FORMATS[fmt], headers=OUTPUT_HEADERS)


@router.get("/v1/messages/{message_id}/formula")
async def message_formula(request: Request, message_id: str, tenant: str = Depends(auth)) -> dict:
    """The message's scene as one line (``scenestream.outputs.formula``) and the line parsed back."""
    from scenestream.outputs.formula import format_formula, parse_formula
    from scenestream.schemas.records import Scene

    payload = await message_payload(the_api(request), check_id(message_id, "message_id"), tenant)
    scene = Scene.model_validate(payload)
    try:
        line = format_formula(scene)
    except ValueError as exc:
        raise APIError(422, f"the scene cannot be written as a formula: {exc}", code="formula_unavailable") from None
    parts = parse_formula(line)
    return {
        "object": "scene.formula",
        "message_id": message_id,
        "scene_id": scene.scene_id,
        "formula": line,
        "parts": {
            "delta_code": parts.delta_code,
            "concepts": list(parts.concepts),
            "registers": [{"name": name, "weight": weight} for name, weight in parts.registers],
            "resonance": parts.resonance,
            "symbol": parts.symbol,
        },
    }


@router.get("/v1/feed", include_in_schema=False)
async def feed(request: Request, tenant: str = Depends(auth)) -> StreamingResponse:
    """SSE: a ``hello`` event (the tenant), then the tenant's ``scene``, ``delta``, ``final``, ``error`` and
    ``gap`` events as the gateway reads them (comments keep an idle stream open)."""
    api = the_api(request)
    api.gateway()  # 503 until the pipeline is up

    async def events():
        with api.feed.subscribe(tenant) as subscription:
            yield sse({"type": "hello", "tenant": tenant})
            while True:
                try:
                    event = await subscription.get(FEED_KEEPALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield sse(event)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def sse(doc: dict) -> str:
    return f"data: {json.dumps(doc, ensure_ascii=False)}\n\n"


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/view/")


def include_views(app: FastAPI) -> None:
    """The routes above and the web view's static files (``/view/``) on ``app``."""
    app.include_router(router)
    app.mount("/view", StaticFiles(directory=WEB, html=True), name="view")
