"""payflow's app served by a real uvicorn in a background thread of the test process.

Used where something outside the test must reach payflow over TCP — the payments sandbox
delivering webhooks, a browser following Checkout redirects — while coverage is still measured.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI

from payflow.app import create_app
from payflow.config import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve_in_thread(settings: Settings, port: int) -> Iterator[str]:
    """Serve create_app(settings) on 127.0.0.1:port until the block ends; yields the base URL."""
    with serve_app_in_thread(settings, port) as (base, _app):
        yield base


@contextmanager
def serve_app_in_thread(settings: Settings, port: int) -> Iterator[tuple[str, FastAPI]]:
    """serve_in_thread, handing back the app too (its context: secrets, the running sandbox)."""
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"payflow-{port}", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(base + "/health/live", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError("payflow did not start in its thread")
        time.sleep(0.05)
    try:
        yield base, app
    finally:
        server.should_exit = True
        thread.join(timeout=20)
