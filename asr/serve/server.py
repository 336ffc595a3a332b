"""Running the front ends: uvicorn for the HTTP API, the Wyoming listener, or both, over one
`TranscriptionService`; SIGTERM drains them and the process exits 0.

On SIGTERM (or Ctrl-C): new requests are refused (503 / a Wyoming `error`), uvicorn stops
listening and lets the requests in flight finish for up to `shutdown_seconds`, the Wyoming
requests in flight get the same time, then the model thread ends.
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import sys
import time
from urllib.parse import urlparse

import torch
import uvicorn

from asr.serve.app import create_app
from asr.serve.config import ServeConfig
from asr.serve.service import TranscriptionService
from asr.serve.wyoming import start_wyoming


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warnings(config: ServeConfig, host: str | None, wyoming: str | None) -> list[str]:
    """What the user should know about listening beyond this machine."""
    lines = []
    if host is not None and not is_loopback(host) and not config.api_key:
        lines.append(
            f"--host {host} accepts requests from other machines and no API key is set "
            "(--api-key or ASR_API_KEY): anyone who can reach this port can use the server"
        )
    if wyoming:
        parsed = urlparse(wyoming)
        if parsed.scheme == "tcp" and not is_loopback(parsed.hostname or ""):
            lines.append(
                f"--wyoming {wyoming} accepts connections from other machines; the Wyoming "
                "protocol has no authentication"
            )
    return lines


class _Uvicorn(uvicorn.Server):
    """uvicorn's server that also tells us when a shutdown signal arrives."""

    def __init__(self, config: uvicorn.Config, on_signal):
        super().__init__(config)
        self.on_signal = on_signal

    def handle_exit(self, sig, frame) -> None:
        self.on_signal()
        super().handle_exit(sig, frame)


def run_server(config: ServeConfig, host: str | None, port: int, wyoming: str | None = None) -> int:
    """Serve until SIGTERM or Ctrl-C: HTTP on host:port unless `host` is None, Wyoming on the
    `wyoming` URI when given. Returns 0 after a drain, 1 when the model cannot be loaded."""
    service = TranscriptionService(config)
    # each lane runs the model on its share of torch's threads (OMP_NUM_THREADS or the cores)
    torch.set_num_threads(max(1, torch.get_num_threads() // config.lanes))
    # uvicorn re-raises the signal that stopped it once it has drained; a SIGTERM handler of
    # our own makes that re-raise a no-op, so a drained server exits 0
    previous = signal.signal(signal.SIGTERM, lambda sig, frame: None)
    try:
        return asyncio.run(_serve(service, host, port, wyoming))
    finally:
        signal.signal(signal.SIGTERM, previous)


async def _serve(
    service: TranscriptionService, host: str | None, port: int, wyoming: str | None
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def drain() -> None:
        service.draining = True
        loop.call_soon_threadsafe(stop.set)

    server = None
    if host is not None:
        app = create_app(service, owns_service=False)
        uv_config = uvicorn.Config(
            app,
            host=host,
            port=port,
            timeout_graceful_shutdown=int(service.config.shutdown_seconds),
            log_level="info",
        )
        server = _Uvicorn(uv_config, drain)
    loading = loop.run_in_executor(None, service.load)
    loading.add_done_callback(lambda f: _loaded(f, service, server, stop))
    listener = await start_wyoming(wyoming, service) if wyoming else None
    if listener is not None:
        print(f"asr: Wyoming on {wyoming}", file=sys.stderr)
    try:
        if server is not None:
            await server.serve()
            drain()
        else:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, drain)
            await stop.wait()
        await _finish_in_flight(service)
    finally:
        if listener is not None:
            await listener.stop()
        await asyncio.to_thread(service.close)
    return 1 if service.load_error else 0


def _loaded(future, service: TranscriptionService, server, stop: asyncio.Event) -> None:
    """Say the model is loaded, or stop the server when it could not be."""
    if future.exception() is None:
        print(f"asr: serving model {service.name}", file=sys.stderr)
        return
    print(f"asr: error: cannot load the model: {service.load_error}", file=sys.stderr)
    if server is not None:
        server.should_exit = True
    stop.set()


async def _finish_in_flight(service: TranscriptionService) -> None:
    """Wait up to shutdown_seconds for the requests still in flight (Wyoming's)."""
    deadline = time.monotonic() + service.config.shutdown_seconds
    while service.in_flight and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
