"""Run the payments sandbox on its own: `python -m payflow.sandbox --port 12111 --webhook-url ...`.

For setups where several payflow processes must share one sandbox (its state is in memory, so
it cannot live inside more than one process). payflow then points STRIPE_API_BASE at it.
"""

from __future__ import annotations

import argparse
import sys

import uvicorn

from payflow.sandbox.app import create_sandbox_app
from payflow.sandbox.config import SandboxConfig, new_webhook_secret


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m payflow.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--webhook-url", required=True)
    parser.add_argument("--webhook-secret", default=None, help="whsec_...; generated if omitted")
    parser.add_argument("--public-base", default=None, help="default: http://HOST:PORT")
    args = parser.parse_args(argv)
    config = SandboxConfig(
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret or new_webhook_secret(),
        public_base=args.public_base or f"http://{args.host}:{args.port}",
    )
    sys.stdout.write(
        f"payments sandbox: API base {config.public_base}, webhooks to {config.webhook_url}, "
        f"signing secret {config.webhook_secret}\n"
    )
    uvicorn.run(create_sandbox_app(config), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
