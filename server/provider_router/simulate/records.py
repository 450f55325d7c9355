"""Recorded requests from a JSONL file: access-log lines, OpenAI chat bodies, batch lines.

Three shapes are accepted, one JSON object per line:
- an access-log line (`"type": "access"`, telemetry/access.py): method, tenant, provider,
  model, input/output tokens, cost, `ts`. It holds no prompt: the replay asks for the
  recorded model (`requested_model` when the line has it) with a prompt of the recorded
  size, and prices the recorded usage. Lines of other methods (Route, Register, ...) and
  other log lines are ignored, not malformed;
- an OpenAI-style chat body: `{"model": ..., "messages": [...], "max_tokens": ...}`;
- a Batch API line: `{"custom_id": ..., "body": {<chat body>}}`.
A body that uses tools, images or a JSON response format requires that capability, as a
caller of the router would ask for it; its `metadata` (string values) become routing
attributes, so rules on e.g. `tenant` or `priority` match.

The tenant a request is replayed as (the server takes it from the API key): an access line's
`tenant`; a body's `metadata.tenant`, else its `user` (OpenAI's caller field). It becomes the
request's `tenant`, so the candidate config's tenant policy applies as on the server.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from provider_router import domain as d

CHAT_METHODS = frozenset({"Chat", "StreamChat"})


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request to replay."""

    line: int
    request: d.ChatRequest
    at: float | None = None  # epoch seconds, when the line says
    usage: d.Usage | None = None  # what the recorded answer used, when the line says


@dataclass(frozen=True, slots=True)
class Malformed:
    """A line that is neither of the accepted shapes."""

    line: int
    problem: str


class BadLine(ValueError):
    """A line's problem, in words."""


@dataclass(frozen=True, slots=True)
class RecordedLog:
    """Everything read from one file."""

    requests: tuple[Recorded, ...]
    malformed: tuple[Malformed, ...]
    ignored: int


def read_log(path: Path) -> RecordedLog:
    """Parse every line (OSError when the file cannot be read)."""
    requests: list[Recorded] = []
    malformed: list[Malformed] = []
    ignored = 0
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                recorded = parse_line(number, text)
            except BadLine as error:
                malformed.append(Malformed(number, str(error)))
                continue
            if recorded is None:
                ignored += 1
            else:
                requests.append(recorded)
    return RecordedLog(tuple(requests), tuple(malformed), ignored)


def parse_line(number: int, text: str) -> Recorded | None:
    """The request on one line, None for a line that records no chat request."""
    try:
        raw = json.loads(text.rstrip("\r\n"))
    except json.JSONDecodeError as error:
        raise BadLine(f"not JSON ({error.msg} at column {error.colno})") from None
    except ValueError as error:  # e.g. a number too large to convert
        raise BadLine(f"not JSON ({error})") from None
    if not isinstance(raw, dict):
        raise BadLine("not a JSON object")
    if raw.get("type") == "access" or ("request_id" in raw and "messages" not in raw):
        return _access_line(number, raw)
    body = raw.get("body", raw)  # a Batch API line wraps the chat body
    if not isinstance(body, dict):
        raise BadLine("`body` is not a JSON object")
    return Recorded(number, chat_body(body), _timestamp(raw))


# --- access-log lines ------------------------------------------------------------------------


def _int(raw: Mapping[str, object], *names: str) -> int | None:
    for name in names:
        value = raw.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise BadLine(f"`{name}` is not a non-negative number")
        return int(value)
    return None


def _timestamp(raw: Mapping[str, object]) -> float | None:
    value = raw.get("ts", raw.get("timestamp"))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadLine("`ts` is not epoch seconds")
    return float(value)


def _access_line(number: int, raw: Mapping[str, object]) -> Recorded | None:
    method = str(raw.get("method", "")).rsplit("/", 1)[-1]
    if method not in CHAT_METHODS:
        return None
    model = raw.get("requested_model", raw.get("model", ""))
    if not isinstance(model, str):
        raise BadLine("`model` is not a string")
    prompt = _int(raw, "input_tokens", "prompt_tokens") or 0
    completion = _int(raw, "output_tokens", "completion_tokens")
    usage = None
    if completion is not None:
        usage = d.Usage(prompt, completion, prompt + completion)
    tenant = raw.get("tenant", "")
    attributes = {"tenant": tenant} if isinstance(tenant, str) and tenant else {}
    # No prompt text is logged: a stand-in of the recorded size (4 characters a token) lets
    # context-window and price checks see the right figure.
    message = d.ChatMessage(d.Role.USER, "x" * (4 * max(0, prompt - 4)))
    request = d.ChatRequest(
        messages=(message,),
        routing=d.RoutingOptions(model=model, attributes=attributes),
        params=d.GenerationParams(max_tokens=completion or None),
        stream=method == "StreamChat", tenant=attributes.get("tenant", ""))
    return Recorded(number, request, _timestamp(raw), usage)


# --- OpenAI chat bodies ---------------------------------------------------------------------


def _parts(content: list[object]) -> Iterator[d.ContentPart]:
    for part in content:
        if not isinstance(part, dict):
            raise BadLine("a content part is not an object")
        if part.get("type") == "text":
            yield d.TextPart(str(part.get("text", "")))
        elif part.get("type") == "image_url":
            url = part.get("image_url")
            yield d.ImagePart(url=str(url.get("url", "") if isinstance(url, dict) else url))
        else:
            raise BadLine(f"unknown content part type {part.get('type')!r}")


def _message(raw: object, index: int) -> d.ChatMessage:
    if not isinstance(raw, dict):
        raise BadLine(f"messages[{index}] is not an object")
    role = raw.get("role")
    if role == "developer":
        role = "system"
    try:
        parsed_role = d.Role(str(role))
    except ValueError:
        raise BadLine(f"messages[{index}].role {role!r} is not a chat role") from None
    content = raw.get("content") or ""
    parts: tuple[d.ContentPart, ...] = ()
    if isinstance(content, list):
        parts, content = tuple(_parts(content)), ""
    elif not isinstance(content, str):
        raise BadLine(f"messages[{index}].content is neither text nor parts")
    calls = raw.get("tool_calls") or []
    if not isinstance(calls, list):
        raise BadLine(f"messages[{index}].tool_calls is not a list")
    tool_calls = tuple(
        d.ToolCall(str(c.get("id", "")), str(c.get("function", {}).get("name", "")),
                   str(c.get("function", {}).get("arguments", "")))
        for c in calls if isinstance(c, dict))
    return d.ChatMessage(parsed_role, content, parts, tool_calls,
                         str(raw.get("tool_call_id", "")), str(raw.get("name", "")))


def _tools(raw: object) -> tuple[d.ToolDefinition, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise BadLine("`tools` is not a list")
    tools = []
    for tool in raw:
        function = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadLine("a tool has no function name")
        parameters = function.get("parameters") or {}
        tools.append(d.ToolDefinition(function["name"], str(function.get("description", "")),
                                      parameters if isinstance(parameters, dict) else {}))
    return tuple(tools)


def _float(body: Mapping[str, object], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadLine(f"`{name}` is not a number")
    return float(value)


def _params(body: Mapping[str, object]) -> d.GenerationParams:
    stop = body.get("stop") or ()
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list | tuple):
        raise BadLine("`stop` is neither a string nor a list")
    stops = tuple(str(s) for s in stop)
    max_tokens = _int(body, "max_completion_tokens", "max_tokens")
    seed = _int(body, "seed")
    return d.GenerationParams(_float(body, "temperature"), _float(body, "top_p"),
                              max_tokens or None, stops, seed)


def _capabilities(messages: tuple[d.ChatMessage, ...], tools: tuple[d.ToolDefinition, ...],
                  json_output: bool) -> frozenset[d.Capability]:
    needed = set()
    if tools:
        needed.add(d.Capability.TOOLS)
    if any(m.has_images() for m in messages):
        needed.add(d.Capability.VISION)
    if json_output:
        needed.add(d.Capability.JSON)
    return frozenset(needed)


def chat_body(body: Mapping[str, object]) -> d.ChatRequest:
    """An OpenAI chat-completions body as the router's request."""
    model = body.get("model", "")
    if not isinstance(model, str):
        raise BadLine("`model` is not a string")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise BadLine("`messages` is missing or empty")
    messages = tuple(_message(m, i) for i, m in enumerate(raw_messages))
    tools = _tools(body.get("tools"))
    fmt = body.get("response_format")
    json_output = isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")
    metadata = body.get("metadata")
    # The body's metadata feed routing rules, as a caller's routing attributes would.
    attributes = ({str(k): v for k, v in metadata.items() if isinstance(v, str)}
                  if isinstance(metadata, dict) else {})
    routing = d.RoutingOptions(model=model, attributes=attributes,
                               capabilities=_capabilities(messages, tools, json_output))
    return d.ChatRequest(messages=messages, routing=routing, params=_params(body), tools=tools,
                         stream=bool(body.get("stream", False)),
                         tenant=_body_tenant(attributes, body.get("user")))


def _body_tenant(attributes: Mapping[str, str], user: object) -> str:
    """The tenant a body names: `metadata.tenant`, else the OpenAI `user` field."""
    tenant = attributes.get("tenant") or (user if isinstance(user, str) else "")
    return tenant.strip()
