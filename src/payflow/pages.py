"""payflow's few HTML pages for people (the landing page, the pages a buyer returns to from
Checkout): one template and one stylesheet, shared with the payments sandbox's hosted checkout, no
outside assets and no script (a page that must update itself reloads with a meta refresh)."""

from __future__ import annotations

from functools import cache
from html import escape
from importlib.resources import files

from fastapi.responses import HTMLResponse

ASSETS = files("payflow") / "static" / "pages"


@cache
def stylesheet() -> str:
    return (ASSETS / "pages.css").read_text(encoding="utf-8")


@cache
def favicon() -> bytes:
    return (ASSETS / "favicon.svg").read_bytes()


def page(
    title: str, body: str, *, status: int = 200, refresh_url: str | None = None
) -> HTMLResponse:
    """A whole page around `body` (trusted HTML: escape what goes into it). `refresh_url`: reload
    there in a few seconds (the order is still settling)."""
    refresh = (
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS};url={escape(refresh_url)}">\n'
        if refresh_url
        else ""
    )
    html = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"{refresh}<title>{escape(title)} · payflow</title>\n"
        '<link rel="icon" href="/favicon.ico" type="image/svg+xml">\n'
        f"<style>{stylesheet()}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


REFRESH_SECONDS = 3


def landing(*, docs: bool, sandbox: bool) -> HTMLResponse:
    links = [
        *(['<li><a href="/docs">API documentation</a> (Swagger UI)</li>'] if docs else []),
        '<li><a href="/api/v1/openapi.json">OpenAPI document</a></li>',
        *(
            ['<li><a href="/sandbox/">Payments sandbox</a> (Stripe stand-in)</li>']
            if sandbox
            else []
        ),
        '<li><a href="/health/ready">Readiness</a></li>',
    ]
    body = (
        "<h1>payflow</h1>\n"
        "<p>A payments backend for digital products: wallets with an exact ledger, products with "
        "limited stock, and purchases paid from the wallet or through Stripe Checkout.</p>\n"
        f'<ul class="links">\n{"".join(links)}\n</ul>'
    )
    return page("payflow", body)
