"""What `payflow serve` runs in each worker process: the application, plus process-wide tuning
that does not belong in `create_app` (which tests call many times in one process).

The garbage collector: a full collection walks every container object the process holds. After
start-up that is ≈ 140,000 objects (FastAPI, pydantic, SQLAlchemy and the Stripe SDK's classes and
schemas), ≈ 80 ms on the benchmark machine, during which the worker answers nothing: every request
in flight on it waits. Those pauses were most of the p99 latency (bench/README.md). The objects
alive once the application is built live as long as the process, so they are moved out of the
collector's sight (`gc.freeze`); collections then look only at what requests create. The cost:
frozen objects are still freed by reference counting, but a reference cycle among them that later
becomes garbage would never be collected (start-up objects are not replaced while serving).
"""

from __future__ import annotations

import gc

from fastapi import FastAPI

from payflow.app import create_app


def create_worker_app() -> FastAPI:
    """The application for one `payflow serve` worker (a uvicorn factory)."""
    app = create_app()
    gc.collect()  # what start-up left behind goes now, instead of being frozen with the rest
    gc.freeze()
    return app
