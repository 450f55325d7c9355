"""The `provider-router` command line: serve, and client commands against a running server.

Exit codes: 0 success; 1 the call failed (the gRPC status and details are printed);
2 a usage or configuration mistake (the message names the problem); 4 `health` says
NOT_SERVING (as grpc_health_probe does).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from provider_router.errors import ConfigError
from provider_router.simulate.arguments import add_arguments as simulate_arguments

DEFAULT_TARGET = "127.0.0.1:50051"


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default=os.environ.get("PROVIDER_ROUTER_TARGET",
                                                           DEFAULT_TARGET),
                        help="server HOST:PORT (env PROVIDER_ROUTER_TARGET, default %(default)s)")
    parser.add_argument("--api-key", default=os.environ.get("PROVIDER_ROUTER_API_KEY"),
                        help="API key sent as a bearer token (env PROVIDER_ROUTER_API_KEY)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="deadline in seconds for the call")
    parser.add_argument("--tls", action="store_true",
                        help="connect over TLS, verifying the server (system trust store)")
    parser.add_argument("--ca", type=Path, default=None, metavar="PEM",
                        help="trust this CA bundle for the server's certificate (implies --tls)")
    parser.add_argument("--cert", type=Path, default=None, metavar="PEM",
                        help="client certificate chain for mTLS (with --key; implies --tls)")
    parser.add_argument("--key", type=Path, default=None, metavar="PEM",
                        help="private key of --cert")


def _routing_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="", help="alias, provider/model or model name")
    parser.add_argument("--cap", action="append", default=[], metavar="CAPABILITY",
                        help="required capability (repeatable): chat, vision, tools, json, ...")
    parser.add_argument("--attr", action="append", default=[], metavar="KEY=VALUE",
                        help="routing attribute (repeatable), e.g. priority=critical")
    parser.add_argument("--label", action="append", default=[], help="label (repeatable)")
    parser.add_argument("--strategy", default="", help="strategy override, e.g. cost")
    parser.add_argument("--prefer", action="append", default=[], metavar="PROVIDER")
    parser.add_argument("--exclude", action="append", default=[], metavar="PROVIDER")
    parser.add_argument("--affinity-key", default="")
    parser.add_argument("--fallback", action="append", default=[], metavar="PROVIDER/MODEL",
                        help="a target to try after the routed ones (repeatable, in order)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="provider-router", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gRPC server")
    serve.add_argument("--config", type=Path, default=_env_path("PROVIDER_ROUTER_CONFIG"),
                       help="TOML config file (env PROVIDER_ROUTER_CONFIG)")
    serve.add_argument("--listen", default=None, help="HOST:PORT (default from config, "
                                                      "0.0.0.0:50051)")
    serve.add_argument("--check", action="store_true",
                       help="validate the configuration and exit")
    serve.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                       help="N server processes on one port (SO_REUSEPORT), supervised by "
                            "this one (default from config: server.workers, 1)")

    route = commands.add_parser("route", help="show where a request would go, and why")
    _add_client_options(route)
    _routing_options(route)
    route.add_argument("--explain", action="store_true", help="print every candidate")
    route.add_argument("--json", action="store_true", help="print the decision as JSON")
    route.add_argument("--stream", action="store_true", help="route as for a stream")
    route.add_argument("--prompt", default="", help="prompt text (for token estimates)")
    route.add_argument("--at", default="", help="evaluate time rules at this ISO-8601 instant")
    route.add_argument("--scenarios", type=Path, default=None,
                       help="TOML file of named scenarios with expected targets")

    chat = commands.add_parser("chat", help="send a prompt and print the answer")
    _add_client_options(chat)
    _routing_options(chat)
    chat.add_argument("prompt", help="the user message")
    chat.add_argument("--system", default="", help="system prompt")
    chat.add_argument("--max-tokens", type=int, default=None)
    chat.add_argument("--temperature", type=float, default=None)
    chat.add_argument("--cache", default="", metavar="MODE",
                      help="response cache mode for this call: off, read, write or on "
                           "(default: the server's [cache] mode)")
    chat.add_argument("--no-stream", action="store_true", help="use unary Chat")
    chat.add_argument("--json", action="store_true", help="print the whole result as JSON")

    providers = commands.add_parser("providers", help="list providers and their health")
    _add_client_options(providers)
    providers.add_argument("--json", action="store_true")

    register = commands.add_parser("register", help="add or replace a provider from a file")
    _add_client_options(register)
    register.add_argument("file", type=Path, help="TOML file with one provider table, as in "
                                                  "[[providers]] of the config")
    register.add_argument("--validate-only", action="store_true")

    unregister = commands.add_parser("unregister", help="remove a provider")
    _add_client_options(unregister)
    unregister.add_argument("name")

    simulate = commands.add_parser(
        "simulate", help="replay recorded requests through a candidate config (what-if)")
    simulate_arguments(simulate)

    health = commands.add_parser("health", help="check the gRPC health service")
    _add_client_options(health)
    health.add_argument("--service", default="", help='service name ("" = overall)')
    _tenant_commands(commands)
    return parser


def _tenant_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hash_key = commands.add_parser(
        "hash-key", help="print the key_sha256 of an API key read from stdin (for [[tenants]])")
    hash_key.add_argument("--generate", action="store_true",
                          help="make a new random key and print it with its hash")
    usage = commands.add_parser("usage", help="spend and budgets per tenant (admin)")
    _add_client_options(usage)
    usage.add_argument("tenants", nargs="*", help="tenant names (default: all)")
    usage.add_argument("--lines", action="store_true",
                       help="also print this month's spend per provider model")
    usage.add_argument("--json", action="store_true")
    tenants = commands.add_parser("tenants", help="configured tenants and limits (admin)")
    _add_client_options(tenants)
    tenants.add_argument("--json", action="store_true")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _serve(args: argparse.Namespace) -> int:
    from provider_router.app import SecretIndex, serve
    from provider_router.config import check_listen, load_config
    from provider_router.telemetry.logging import setup_logging

    env = dict(os.environ)
    config = load_config(args.config, env)
    if args.listen is not None:
        check_listen(args.listen)
    workers = args.workers or config.server.workers
    if workers > 1:
        from provider_router.supervisor import check_workers

        check_workers(config, args.listen, workers)
    if args.check:
        from provider_router.telemetry.tracing import check_tracing_env

        check_tracing_env(env)
        print(f"configuration OK ({config.source}, {len(config.providers)} providers)")
        return 0
    secrets = SecretIndex(env)
    setup_logging(config.logging.level, config.logging.format, secrets)
    if workers > 1:
        from provider_router.supervisor import plan, supervise

        config_path = str(args.config) if args.config is not None else None
        return _run(supervise(plan(config, env, config_path, args.listen, workers)))
    return _run(serve(config, env, secrets, args.listen))


def _run(coro: object) -> int:
    try:
        import uvloop
    except ImportError:  # uvloop is optional (not on Windows); asyncio works the same
        return int(asyncio.run(coro))  # type: ignore[arg-type]
    return int(uvloop.run(coro))  # type: ignore[arg-type]


def _client_command(name: str) -> Callable[[argparse.Namespace], int]:
    from provider_router import cli_client, cli_tenants

    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "route": cli_client.route, "chat": cli_client.chat,
        "providers": cli_client.providers, "register": cli_client.register,
        "unregister": cli_client.unregister, "health": cli_client.health,
        "hash-key": cli_tenants.hash_key_command, "usage": cli_tenants.usage,
        "tenants": cli_tenants.tenants,
    }
    return commands[name]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `provider-router` console script."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "simulate":
            from provider_router.simulate.command import run

            return run(args)
        return _client_command(args.command)(args)
    except ConfigError as error:
        print(f"provider-router: error: {error.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
