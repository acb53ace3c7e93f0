"""``python -m aicd.deploy.router``: the router by hand, for trying it and for benchmarks.

    python -m aicd.deploy.router --listen 127.0.0.1:8000 \\
        --backend r1=127.0.0.1:9001 --backend r2=127.0.0.1:9002 --weight r1=90 --weight r2=10

Serves the common request on the router's native data plane where it was built
(``AICD_ROUTER_NATIVE=0``: the Python path only; see :mod:`aicd.deploy.router.native`), the rest on
uvloop where installed (``AICD_EVENT_LOOP=asyncio``: the stock loop; see
:mod:`aicd.deploy.router.loop`). Serves until SIGINT or SIGTERM, then prints the per-revision
counts (``--json``: the whole snapshot) on standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence

from aicd.deploy.router import loop as event_loop
from aicd.deploy.router.metrics import FieldCount
from aicd.deploy.router.router import Router
from aicd.errors import ConfigError

Backends = dict[str, list[tuple[str, int]]]


def _address(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{what} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8000")
    return host.strip("[]"), int(port)


def _pair(text: str, what: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise ConfigError(f"{what} {text!r}: expected REVISION=VALUE, e.g. r1=127.0.0.1:9001")
    return name, value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m aicd.deploy.router", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT to listen on")
    parser.add_argument("--backend", action="append", default=[], help="REVISION=HOST:PORT (repeatable)")
    parser.add_argument("--weight", action="append", default=[], help="REVISION=N, 0..100, summing to 100")
    parser.add_argument("--count-field", help="PATH:FIELD, e.g. /predict:predictions")
    parser.add_argument("--sticky-header", help="hash this request header onto the weights")
    parser.add_argument("--connect-timeout", type=float, default=3.0)
    parser.add_argument("--response-timeout", type=float, default=30.0)
    parser.add_argument("--max-head-bytes", type=int, default=64 * 1024, help="request head limit (431)")
    parser.add_argument("--max-headers", type=int, default=100, help="request header count limit (431)")
    parser.add_argument("--max-url-bytes", type=int, default=8 * 1024, help="request URL limit (414)")
    parser.add_argument(
        "--mirror", metavar="HOST:PORT", help="shadow: copy every finished request to this candidate too"
    )
    parser.add_argument(
        "--mirror-method",
        action="append",
        default=[],
        help="methods copied (repeat; default GET HEAD OPTIONS)",
    )
    parser.add_argument(
        "--no-request-ids", action="store_true", help="do not give requests an X-Request-Id (benchmarks)"
    )
    parser.add_argument("--json", action="store_true", help="print the whole metrics snapshot at exit")
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> tuple[Router, Backends, dict[str, int] | None]:
    host, port = _address(args.listen, "--listen")
    backends: Backends = {}
    for text in args.backend:
        revision, address = _pair(text, "--backend")
        backends.setdefault(revision, []).append(_address(address, "--backend"))
    weights: dict[str, int] | None = None
    if args.weight:
        weights = {}
        for text in args.weight:
            revision, value = _pair(text, "--weight")
            if not value.isdigit():
                raise ConfigError(f"--weight {text!r}: the weight must be an integer 0..100")
            weights[revision] = int(value)
    field_count = None
    if args.count_field:
        path, sep, field = args.count_field.rpartition(":")
        if not sep or not path.startswith("/") or not field:
            raise ConfigError(
                f"--count-field {args.count_field!r}: expected PATH:FIELD, e.g. /predict:predictions"
            )
        field_count = FieldCount(path, field)
    router = Router(
        host,
        port,
        connect_timeout=args.connect_timeout,
        response_timeout=args.response_timeout,
        sticky_header=args.sticky_header,
        field_count=field_count,
        max_head_bytes=args.max_head_bytes,
        max_headers=args.max_headers,
        max_url_bytes=args.max_url_bytes,
        request_ids=not args.no_request_ids,
    )
    return router, backends, weights


async def serve(
    router: Router,
    backends: dict[str, list[tuple[str, int]]],
    weights: dict[str, int] | None,
    mirror: tuple[str, int] | None = None,
    mirror_methods: list[str] | None = None,
) -> None:
    router.set_backends(backends, weights)
    await router.start()
    if mirror is not None:
        router.start_mirror("shadow", [mirror], methods=mirror_methods or None)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    name = "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
    plane = " and its native data plane" if router.native else ""
    what = f"aicd router on {router.url} -> {router.weights} ({name} event loop){plane}"
    print(what, file=sys.stderr, flush=True)
    await done.wait()
    await router.stop(grace=5.0)


def summary(snapshot: dict[str, object]) -> str:
    lines = []
    revisions = snapshot["revisions"]
    assert isinstance(revisions, dict)
    for name, m in revisions.items():
        lines.append(
            f"{name}: {m['requests']} requests, status {m['status']}, "
            f"{m['errors']} errors ({m['proxy_errors']} by the router), {m['retries']} retries"
        )
    return "\n".join(lines) or "no requests"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        router, backends, weights = build(args)
        mirror = _address(args.mirror, "--mirror") if args.mirror else None
        event_loop.run(serve(router, backends, weights, mirror, args.mirror_method))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    snap = router.snapshot()
    print(json.dumps(snap) if args.json else summary(snap), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
