"""The OpenAI chat API as scenestream speaks it: requests checked, responses and stream chunks built.

Pure functions and pydantic models (no broker, no FastAPI): the routes in :mod:`scenestream.api.app` call
them, and ``tests/unit/api`` tests them alone.

A request field scenestream cannot honour (``tools``, ``n`` > 1, ``logprobs``, an image part …) is refused
with a 400 naming the field, never ignored; so is a field the OpenAI API does not have.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError

from scenestream.schemas.records import MAX_NEW_TOKENS_LIMIT, GenerationParams, LoraOutput, Scene

SCENESTREAM_MODEL = "scenestream"  # the model whose register the scene chooses


class APIError(Exception):
    """An error the API answers in the OpenAI envelope ``{"error": {"message", "type", "code", "param"}}``."""

    TYPES = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        408: "timeout",
        413: "invalid_request_error",
        422: "invalid_request_error",
        429: "rate_limit_error",
        503: "service_unavailable",
        504: "timeout",
    }

    def __init__(
        self,
        status: int,
        message: str,
        code: Optional[str] = None,
        param: Optional[str] = None,
        headers: Optional[dict[str, str]] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    @property
    def type(self) -> str:
        return self.TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")

    def body(self) -> dict:
        return error_body(self.message, self.type, self.code, self.param)


def error_body(message: str, type: str, code: Optional[str] = None, param: Optional[str] = None) -> dict:
    """The OpenAI error envelope."""
    return {"error": {"message": message, "type": type, "code": code, "param": param}}


def bad_request(message: str, param: Optional[str] = None, code: str = "invalid_value") -> APIError:
    return APIError(400, message, code=code, param=param)


# ------------------------------------------------------------------------------------------------ request


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: Optional[str] = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: Union[str, list[TextPart], None] = None
    name: Optional[str] = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: Optional[StrictBool] = None


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``'s body. Fields of the OpenAI API scenestream does not honour are declared
    (so the schema shows them) and refused by :func:`check_request` unless they hold their harmless default."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(..., description="`scenestream` (the scene chooses the register) or a register name.")
    messages: list[ChatMessage] = Field(..., description="The last user message is the text.")
    stream: Optional[StrictBool] = False
    stream_options: Optional[StreamOptions] = None
    max_tokens: Optional[StrictInt] = None
    max_completion_tokens: Optional[StrictInt] = None
    temperature: Optional[StrictFloat] = None
    top_p: Optional[StrictFloat] = None
    seed: Optional[StrictInt] = None
    stop: Union[str, list[str], None] = None
    user: Optional[str] = Field(None, description="The session id (else the X-Session-Id header).")
    # declared so that the OpenAPI schema shows them; refused unless harmless
    n: Optional[StrictInt] = None
    logprobs: Optional[StrictBool] = None
    top_logprobs: Optional[StrictInt] = None
    tools: Optional[list[Any]] = None
    tool_choice: Optional[Any] = None
    parallel_tool_calls: Optional[StrictBool] = None
    functions: Optional[list[Any]] = None
    function_call: Optional[Any] = None
    response_format: Optional[dict] = None
    frequency_penalty: Optional[StrictFloat] = None
    presence_penalty: Optional[StrictFloat] = None
    logit_bias: Optional[dict] = None
    modalities: Optional[list[str]] = None
    audio: Optional[Any] = None
    prediction: Optional[Any] = None
    reasoning_effort: Optional[str] = None
    web_search_options: Optional[Any] = None
    service_tier: Optional[str] = None
    store: Optional[StrictBool] = None
    metadata: Optional[dict] = None


# a field scenestream cannot honour → the values that mean "not asked for"
HARMLESS: dict[str, tuple] = {
    "n": (None, 1),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "parallel_tool_calls": (None,),
    "functions": (None, []),
    "function_call": (None, "none"),
    "response_format": (None, {"type": "text"}),
    "frequency_penalty": (None, 0, 0.0),
    "presence_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "prediction": (None,),
    "reasoning_effort": (None,),
    "web_search_options": (None,),
    "service_tier": (None, "auto", "default"),
    "store": (None, False),
    "metadata": (None, {}),
}
TEXT_ROLES = ("system", "developer", "user", "assistant")


def is_harmless(value: Any, allowed: tuple) -> bool:
    """Whether ``value`` is one of the ``allowed`` values that ask for nothing (``True`` is not ``1``)."""
    return any(
        value is ok or (type(value) is type(ok) or {type(value), type(ok)} == {int, float}) and value == ok
        for ok in allowed
    )


def parse_request(body: Any) -> ChatCompletionRequest:
    """The body as a request, or a 400 naming the first field that is wrong."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object", code="invalid_json")
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        param = ".".join(str(p) for p in err["loc"])
        raise bad_request(f"{param}: {err['msg']}", param=param) from None


class Asked(BaseModel):
    """What a checked chat request asks scenestream to do."""

    model_config = ConfigDict(frozen=True)

    model: str
    register: Optional[str]
    text: str
    session: Optional[str]
    stream: bool
    include_usage: bool
    params: GenerationParams


def check_request(request: ChatCompletionRequest, registers: tuple[str, ...], session_header: Optional[str]) -> Asked:
    """The request's text, register, session and generation parameters; :class:`APIError` (400, 404) for a
    field scenestream cannot honour, a model it does not serve, or no text."""
    for name in request.model_extra or {}:
        raise bad_request(f"unknown field {name!r}: scenestream does not know it", param=name, code="unknown_field")
    for name, allowed in HARMLESS.items():
        value = getattr(request, name)
        if not is_harmless(value, allowed):
            raise bad_request(
                f"{name} is not supported by scenestream (got {value!r})", param=name, code="unsupported_field"
            )
    if request.model != SCENESTREAM_MODEL and request.model not in registers:
        raise APIError(
            404,
            f"the model {request.model!r} does not exist: {SCENESTREAM_MODEL} or one of {', '.join(registers)}",
            code="model_not_found",
            param="model",
        )
    text = last_user_text(request.messages)
    params = generation_params(request)
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    if request.stream_options is not None and not request.stream:
        raise bad_request("stream_options is only allowed with stream: true", param="stream_options")
    for name in (request.stream_options.model_extra or {}) if request.stream_options else {}:
        raise bad_request(f"stream_options.{name} is not supported", param=f"stream_options.{name}")
    session = request.user if request.user else session_header
    if session is not None:
        session = check_session(session, "user" if request.user else "X-Session-Id")
    return Asked(
        model=request.model,
        register=None if request.model == SCENESTREAM_MODEL else request.model,
        text=text,
        session=session,
        stream=bool(request.stream),
        include_usage=include_usage,
        params=params,
    )


def check_session(session: str, param: str) -> str:
    if not session.strip() or len(session) > 256 or any(ord(c) < 32 for c in session):
        raise bad_request(f"{param}: a session id is 1 to 256 printable characters, got {session[:40]!r}", param=param)
    return session


def last_user_text(messages: list[ChatMessage]) -> str:
    """The text of the last user message (its text parts joined by new lines); 400 for a message scenestream
    cannot read (an image, a tool call) or when there is no non-empty user text."""
    if not messages:
        raise bad_request("messages: at least one user message is needed", param="messages")
    text: Optional[str] = None
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if message.role not in TEXT_ROLES:
            raise bad_request(
                f"{where}.role {message.role!r} is not supported (scenestream reads {', '.join(TEXT_ROLES)})",
                param=f"{where}.role",
                code="unsupported_field",
            )
        for name, value in (message.model_extra or {}).items():
            if value is not None and value != []:
                raise bad_request(
                    f"{where}.{name} is not supported by scenestream", param=f"{where}.{name}", code="unsupported_field"
                )
        if isinstance(message.content, list):
            pieces = []
            for j, part in enumerate(message.content):
                if part.type != "text" or part.text is None:
                    raise bad_request(
                        f"{where}.content.{j}: a {part.type!r} part is not supported (scenestream reads text parts)",
                        param=f"{where}.content.{j}.type",
                        code="unsupported_field",
                    )
                pieces.append(part.text)
            content = "\n".join(pieces)
        else:
            content = message.content or ""
        if message.role == "user":
            text = content
    if text is None:
        raise bad_request("messages: at least one user message is needed", param="messages")
    if not text.strip():
        raise bad_request("the last user message is empty or only whitespace", param="messages", code="empty_text")
    return text


PARAM_NAMES = {"max_new_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "seed": "seed"}


def generation_params(request: ChatCompletionRequest) -> GenerationParams:
    """The request's sampling fields as the decoder's :class:`GenerationParams` (400 naming a field out of
    range)."""
    max_tokens = request.max_tokens
    if request.max_completion_tokens is not None:
        if max_tokens is not None and max_tokens != request.max_completion_tokens:
            raise bad_request("max_tokens and max_completion_tokens disagree (give one)", param="max_completion_tokens")
        max_tokens = request.max_completion_tokens
    which = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
    if max_tokens is not None and not 1 <= max_tokens <= MAX_NEW_TOKENS_LIMIT:
        raise bad_request(f"{which} must be between 1 and {MAX_NEW_TOKENS_LIMIT}, got {max_tokens}", param=which)
    stop = request.stop
    stops: tuple[str, ...] = () if stop is None else (stop,) if isinstance(stop, str) else tuple(stop)
    if len(stops) > 4:
        raise bad_request(f"stop takes at most 4 strings, got {len(stops)}", param="stop")
    for s in stops:
        if not 1 <= len(s) <= 64:
            raise bad_request(f"each stop string is 1 to 64 characters, got {s[:70]!r}", param="stop")
    try:
        return GenerationParams(
            max_new_tokens=max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            stop=stops,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "params"
        param = PARAM_NAMES.get(field, field)
        raise bad_request(f"{param}: {err['msg']}", param=param) from None


# ------------------------------------------------------------------------------------------------ responses


def completion_id(message_id: str) -> str:
    return f"chatcmpl-{message_id}"


def finish_reason(output: LoraOutput) -> str:
    """OpenAI's finish reason for a final lora-output: ``length`` at the token limit, else ``stop``."""
    return "length" if output.finish_reason == "length" else "stop"


def usage(output: Optional[LoraOutput]) -> dict:
    prompt = output.prompt_tokens if output is not None else 0
    completion = output.completion_tokens if output is not None else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def extension(
    message_id: str,
    session: str,
    scene: Optional[Scene],
    adapter: Optional[str] = None,
    output: Optional[LoraOutput] = None,
) -> dict:
    """The ``scenestream`` object beside an OpenAI response: the scene the decoder answers, and its adapter."""
    ext: dict[str, Any] = {"message_id": message_id, "session": session}
    if scene is not None:
        ext.update(
            {
                "scene_id": scene.scene_id,
                "register": scene.force_register or scene.register,
                "registers": [{"name": r.name, "weight": r.weight} for r in scene.registers],
                "linkage": scene.linkage,
                "delta_code": scene.delta_code,
                "field": scene.field.model_dump(mode="json"),
                "resonance": scene.resonance,
                "echoes": scene.echoes,
                "symbol": scene.symbol,
                "lang": scene.lang,
            }
        )
    if output is not None:
        ext.update(
            {
                "scene_id": output.scene_id,
                "register": output.register,
                "delta_code": output.delta_code,
                "symbol": output.symbol if output.symbol is not None else ext.get("symbol"),
                "engine": output.engine,
                "base_model": output.model,
                "scenestream_finish_reason": output.finish_reason,
                "timings_ms": output.timings_ms,
            }
        )
        adapter = output.adapter
    ext["adapter"] = adapter
    return ext


def completion(model: str, message_id: str, output: LoraOutput, ext: dict, created: Optional[int] = None) -> dict:
    """A non-streamed ``chat.completion``."""
    return {
        "id": completion_id(message_id),
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": output.text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(output),
            }
        ],
        "usage": usage(output),
        "scenestream": ext,
    }


def chunk(
    model: str,
    message_id: str,
    created: int,
    delta: Optional[dict] = None,
    finish: Optional[str] = None,
    ext: Optional[dict] = None,
    include_usage: bool = False,
    usage_of: Optional[dict] = None,
    choices: bool = True,
) -> dict:
    """One ``chat.completion.chunk``: a delta (``choices`` true) or the usage chunk (``choices`` false, empty
    choices and the usage). With ``include_usage`` every other chunk carries ``usage: null``, as OpenAI's do."""
    body: dict[str, Any] = {
        "id": completion_id(message_id),
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}] if choices else [],
    }
    if include_usage or usage_of is not None:
        body["usage"] = usage_of
    if ext is not None:
        body["scenestream"] = ext
    return body
