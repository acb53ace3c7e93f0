"""Stub of the router's native data plane (``_native.c``; built at install where a C compiler is)."""

NATIVE_HEAD_MAX: int
NATIVE_BODY_MAX: int

# (revision, requests, errors, proxy_errors, retries, client_closed, {status: n}, histogram,
#  latency_sum_ms, latest latencies in ms)
Drained = tuple[str, int, int, int, int, int, dict[int, int], list[int], float, list[float]]

class Plane:
    def __init__(
        self,
        listen_fd: int,
        id_prefix: bytes,
        request_ids: bool,
        max_head_bytes: int,
        max_headers: int,
        max_url_bytes: int,
        connect_timeout: float,
        response_timeout: float,
        client_idle_timeout: float,
        pool_idle_timeout: float,
        max_attempts: int,
        max_idle_per_backend: int,
        reservoir_size: int,
        capture_path: bytes | None,
    ) -> None: ...
    def start(self) -> None: ...
    def stop(self, grace: float = ...) -> None: ...
    def fileno(self) -> int: ...
    def take(self) -> list[tuple[int, bytes]]: ...
    def set_table(self, table: list[tuple[str, int, list[tuple[str, str, int]]]]) -> None: ...
    def set_python_only(self, on: bool) -> None: ...
    def drain(self) -> list[Drained]: ...
    def in_flight(self) -> dict[str, int]: ...
    def captures(self) -> list[tuple[str, bytes, bytes]]: ...

# (method, request line + kept headers, body, keep-alive, request id, X-Forwarded-For seen,
#  X-Forwarded-For values, bytes consumed)
Parsed = tuple[str, bytes, bytes, bool, bytes, bool, bytes, int]

def parse_head(
    data: bytes, max_head_bytes: int = ..., max_headers: int = ..., max_url_bytes: int = ...
) -> tuple[int, Parsed | None]: ...
