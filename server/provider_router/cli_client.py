"""Client subcommands of the CLI: route, chat, providers, register, unregister, health."""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2

from provider_router.api.convert import spec_to_proto
from provider_router.cli_format import (
    describe_rpc_error,
    print_candidates,
    print_providers,
    stream_to_json,
)
from provider_router.config_values import Table, string_list, text
from provider_router.errors import ConfigError
from provider_router.provider_config import load_provider_file
from provider_router.v1 import router_pb2 as pb
from provider_router_client import RouterClient, text_request

EXIT_FAILED = 1
EXIT_NOT_SERVING = 4


def to_json(message: Message) -> dict[str, object]:
    """A message as a JSON-ready dict with proto field names."""
    result: dict[str, object] = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    return result


def _tls_files(args: argparse.Namespace) -> None:
    """ConfigError naming the flag when a TLS file is missing or half a pair is given."""
    if (args.cert is None) != (args.key is None):
        flag = "--key" if args.key is None else "--cert"
        raise ConfigError(flag, None, "a PEM file: --cert and --key go together")
    for flag, path in (("--ca", args.ca), ("--cert", args.cert), ("--key", args.key)):
        if path is not None and not path.is_file():
            raise ConfigError(flag, str(path), "a readable PEM file (no such file)")


@contextmanager
def _client(args: argparse.Namespace) -> Iterator[RouterClient]:
    _tls_files(args)
    with RouterClient(args.target, api_key=args.api_key, tls=args.tls, ca_file=args.ca,
                      cert_file=args.cert, key_file=args.key) as client:
        yield client


def _enum(prefix: str, enum: object, value: str, flag: str) -> int:
    name = f"{prefix}_{value.upper()}"
    try:
        return int(enum.Value(name))  # type: ignore[attr-defined]
    except ValueError:
        names = [n.removeprefix(prefix + "_").lower() for n in enum.keys()[1:]]  # type: ignore[attr-defined]
        raise ConfigError(flag, value, f"one of {', '.join(names)}") from None


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    result = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(flag, item, "KEY=VALUE")
        result[key] = value
    return result


def routing_from_args(args: argparse.Namespace) -> pb.RoutingOptions:
    """RoutingOptions from the shared routing flags."""
    return pb.RoutingOptions(
        model=args.model,
        capabilities=[pb.Capability.ValueType(_enum("CAPABILITY", pb.Capability, c, "--cap"))
                      for c in args.cap],
        strategy=pb.Strategy.ValueType(
            _enum("STRATEGY", pb.Strategy, args.strategy, "--strategy") if args.strategy else 0),
        attributes=_pairs(args.attr, "--attr"), labels=args.label,
        prefer_providers=args.prefer, exclude_providers=args.exclude,
        affinity_key=args.affinity_key, fallbacks=_targets(args.fallback, "--fallback"),
    )


def _targets(values: list[str], flag: str) -> list[pb.RouteTarget]:
    targets = []
    for item in values:
        provider, sep, model = item.partition("/")
        if not sep or not provider.strip() or not model.strip():
            raise ConfigError(flag, item, "PROVIDER/MODEL, e.g. openai/gpt-4o-mini")
        targets.append(pb.RouteTarget(provider=provider.strip(), model=model.strip()))
    return targets


def _instant(value: str, flag: str) -> datetime:
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(flag, value, "an ISO-8601 instant like 2026-01-01T03:00:00Z") from None
    if instant.tzinfo is None:
        raise ConfigError(flag, value, "an instant with a time zone (e.g. a trailing Z)")
    return instant


def route(args: argparse.Namespace) -> int:
    """`provider-router route`."""
    if args.scenarios is not None:
        return _scenarios(args)
    request = pb.RouteRequest(routing=routing_from_args(args), stream=args.stream)
    if args.prompt:
        request.messages.append(pb.ChatMessage(role=pb.ROLE_USER, content=args.prompt))
    if args.at:
        request.evaluation_time.FromDatetime(_instant(args.at, "--at"))
    with _client(args) as client:
        try:
            decision = client.route(request, timeout=args.timeout)
        except grpc.RpcError as error:
            return _failed(error)
    if args.json:
        print(json.dumps(to_json(decision), indent=2))
        return 0
    strategy = pb.Strategy.Name(decision.strategy).removeprefix("STRATEGY_").lower()
    rule = f", rule {decision.rule}" if decision.rule else ""
    print(f"{decision.provider}/{decision.model}  (strategy {strategy}{rule})")
    if decision.fallbacks:
        print("fallbacks: " + ", ".join(f"{t.provider}/{t.model}" for t in decision.fallbacks))
    for note in decision.notes:
        print(f"note: {note}")
    if args.explain:
        print_candidates(decision)
    return 0


def _scenario_request(t: Table) -> pb.RouteRequest:
    attributes = t.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise ConfigError(t.key("attributes"), attributes, "a table of strings")
    request = pb.RouteRequest(routing=pb.RoutingOptions(
        model=text(t, "model", ""), labels=string_list(t, "labels"),
        attributes={str(k): str(v) for k, v in attributes.items()},
        capabilities=[
            pb.Capability.ValueType(_enum("CAPABILITY", pb.Capability, c, t.key("capabilities")))
            for c in string_list(t, "capabilities")]))
    at = text(t, "at", "")
    if at:
        request.evaluation_time.FromDatetime(_instant(at, t.key("at")))
    return request


def _load_scenarios(path: Path) -> list[Table]:
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError("--scenarios", str(path), "an existing TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--scenarios", str(path), f"valid TOML ({exc})") from None
    items = raw.get("scenarios")
    if not isinstance(items, list) or not items:
        raise ConfigError("scenarios", items, "a non-empty array of [[scenarios]] tables")
    return [Table(f"scenarios[{i}]", s) for i, s in enumerate(items)]


def _scenarios(args: argparse.Namespace) -> int:
    failures = 0
    with _client(args) as client:
        for t in _load_scenarios(args.scenarios):
            name = text(t, "name", t.path)
            want = (text(t, "expect_provider", ""), text(t, "expect_model", ""))
            request = _scenario_request(t)
            try:
                got = client.route(request, timeout=args.timeout)
                seen = (got.provider, got.model)
            except grpc.RpcError as error:
                seen = ("error", error.code().name)
            ok = all(w == "" or w == s for w, s in zip(want, seen, strict=True))
            failures += not ok
            print(f"{'PASS' if ok else 'FAIL'}  {name}: got {seen[0]}/{seen[1]}"
                  + ("" if ok else f", expected {want[0] or '*'}/{want[1] or '*'}"))
    print(f"{failures} of the scenarios failed" if failures else "all scenarios passed")
    return EXIT_FAILED if failures else 0


def chat(args: argparse.Namespace) -> int:
    """`provider-router chat`."""
    base = text_request(args.prompt, args.model, args.system, args.max_tokens)
    base.routing.CopyFrom(routing_from_args(args))
    if args.temperature is not None:
        base.parameters.temperature = args.temperature
    with _client(args) as client:
        try:
            if args.no_stream:
                return _chat_unary(client, base, args)
            request = pb.StreamChatRequest()
            request.ParseFromString(base.SerializeToString())  # same fields, same numbers
            return _chat_stream(client, request, args)
        except grpc.RpcError as error:
            return _failed(error)


def _summary(provider: str, model: str, usage: pb.Usage, cost: float | None,
             latency_s: float) -> str:
    cost_text = f"${cost:.6f}" if cost is not None else "cost unknown"
    estimated = " (estimated)" if usage.estimated else ""
    return (f"[{provider}/{model} · {usage.prompt_tokens}+{usage.completion_tokens} tokens"
            f"{estimated} · {cost_text} · {latency_s * 1000:.0f} ms]")


def _chat_unary(client: RouterClient, request: pb.ChatRequest, args: argparse.Namespace) -> int:
    response = client.chat(request, timeout=args.timeout)
    if args.json:
        body = to_json(response)
        print(json.dumps({"provider": response.provider, "model": response.model,
                          "content": response.message.content,
                          "finish_reason": body["finish_reason"], "usage": body["usage"],
                          "cost_usd": response.cost_usd if response.HasField("cost_usd")
                          else None, "attempts": body["attempts"],
                          "request_id": response.request_id}, indent=2))
        return 0
    print(response.message.content)
    cost = response.cost_usd if response.HasField("cost_usd") else None
    print(_summary(response.provider, response.model, response.usage, cost,
                   response.latency.ToTimedelta().total_seconds()), file=sys.stderr)
    return 0


def _chat_stream(client: RouterClient, request: pb.StreamChatRequest,
                 args: argparse.Namespace) -> int:
    events = client.stream_chat(request, timeout=args.timeout)
    if args.json:
        print(json.dumps(stream_to_json(events), indent=2))
        return 0
    provider = model = ""
    for event in events:
        kind = event.WhichOneof("event")
        if kind == "start":
            provider, model = event.start.provider, event.start.model
        elif kind == "delta":
            sys.stdout.write(event.delta.text)
            sys.stdout.flush()
        elif kind == "restart":
            print(f"\n[restarting on {event.restart.provider}/{event.restart.model}: "
                  f"{event.restart.reason}]", file=sys.stderr)
        elif kind == "end":
            end = event.end
            print()
            cost = end.cost_usd if end.HasField("cost_usd") else None
            print(_summary(end.provider or provider, end.model or model, end.usage, cost,
                           end.latency.ToTimedelta().total_seconds()), file=sys.stderr)
    return 0


def providers(args: argparse.Namespace) -> int:
    """`provider-router providers`."""
    with _client(args) as client:
        try:
            listing = client.list_providers(timeout=args.timeout)
        except grpc.RpcError as error:
            return _failed(error)
    if args.json:
        print(json.dumps(to_json(listing), indent=2))
    else:
        print_providers(listing)
    return 0


def register(args: argparse.Namespace) -> int:
    """`provider-router register FILE`."""
    spec = load_provider_file(args.file)
    message = spec_to_proto(spec, api_key_set=False)
    if spec.api_key is not None:
        message.api_key = spec.api_key.reveal()  # sent to the server only, never printed
    with _client(args) as client:
        try:
            response = client.register(message, args.validate_only, timeout=args.timeout)
        except grpc.RpcError as error:
            return _failed(error)
    verb = ("valid" if args.validate_only else
            "registered" if response.created else "replaced" if response.changed else "unchanged")
    print(f"{response.provider.name}: {verb}")
    return 0


def unregister(args: argparse.Namespace) -> int:
    """`provider-router unregister NAME`."""
    with _client(args) as client:
        try:
            response = client.unregister(args.name, timeout=args.timeout)
        except grpc.RpcError as error:
            return _failed(error)
    print(f"{response.provider.name}: removed")
    return 0


def health(args: argparse.Namespace) -> int:
    """`provider-router health`: exit 0 SERVING, 4 otherwise (like grpc_health_probe)."""
    with _client(args) as client:
        try:
            status = client.health(args.service, timeout=args.timeout or 5.0)
        except grpc.RpcError as error:
            return _failed(error)
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    print(f"status: {name}")
    return 0 if status == health_pb2.HealthCheckResponse.SERVING else EXIT_NOT_SERVING


def _failed(error: grpc.RpcError) -> int:
    print(describe_rpc_error(error), file=sys.stderr)
    return EXIT_FAILED
