"""Run the payments sandbox on its own: `python -m payflow.sandbox --port 12111 --webhook-url ...`.

For setups where several payflow processes must share one sandbox (its state is in memory, so
it cannot live inside more than one process). payflow then points STRIPE_API_BASE at it and sets
STRIPE_SECRET_KEY to the sandbox's key (printed at start; `--api-key` to choose it). Checkout
sessions may send browsers only under `--redirect-base` (default: the webhook URL's origin,
where payflow's PUBLIC_URL normally is).
"""

from __future__ import annotations

import argparse
import sys
from urllib.parse import urlsplit

import uvicorn

from payflow.sandbox.app import create_sandbox_app
from payflow.sandbox.config import SandboxConfig, new_api_key, new_webhook_secret

# Idle keep-alive connections stay open this long, as payflow's own (HTTP_KEEPALIVE_TIMEOUT):
# longer than payflow's gateway client keeps a connection idle before reusing it.
KEEPALIVE_SECONDS = 75


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m payflow.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--webhook-url", required=True)
    parser.add_argument("--webhook-secret", default=None, help="whsec_...; generated if omitted")
    parser.add_argument("--public-base", default=None, help="default: http://HOST:PORT")
    parser.add_argument("--api-key", default=None, help="sk_test_...; generated if omitted")
    parser.add_argument(
        "--redirect-base", default=None, help="payflow's PUBLIC_URL; default: the webhook origin"
    )
    args = parser.parse_args(argv)
    webhook = urlsplit(args.webhook_url)
    config = SandboxConfig(
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret or new_webhook_secret(),
        api_key=args.api_key or new_api_key(),
        redirect_base=args.redirect_base or f"{webhook.scheme}://{webhook.netloc}",
        public_base=args.public_base or f"http://{args.host}:{args.port}",
    )
    sys.stdout.write(
        f"payments sandbox: API base {config.public_base}, webhooks to {config.webhook_url}, "
        f"signing secret {config.webhook_secret}, API key {config.api_key}, "
        f"redirects under {config.redirect_base}\n"
    )
    uvicorn.run(
        create_sandbox_app(config),
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_keep_alive=KEEPALIVE_SECONDS,
    )


if __name__ == "__main__":
    main()
