"""The hosted checkout page: what a buyer sees at a session's `url`, and the buttons on it.

Plain HTML forms with empty bodies and no script at all, so the page works under a strict
Content-Security-Policy and in any browser. Form actions are relative to the page, so they work
whatever host name and mount prefix the browser used to reach it.

- Pay: the card succeeds; the session completes paid; 303 to success_url.
- Pay later: an async payment method (a bank debit, say): the session completes unpaid, 303 to
  success_url, and `checkout.session.async_payment_succeeded` follows after a delay.
- Decline: modelled as an async payment method that fails, because that is the only way a
  Stripe Checkout payment fails *after* the buyer is sent back: the session completes unpaid,
  303 to success_url (as Stripe does for async methods), then `async_payment_failed`.
  (A card declined at once never leaves Stripe's page and sends no checkout event.)
- Cancel: 303 to cancel_url; the session stays open, as Stripe's back link leaves it.

Every button's form carries a token bound to its session (an HMAC of the session id under a
secret made at start), and a POST without the right one, or that the browser says came from
another site (`Sec-Fetch-Site`), is refused with 403 and changes nothing: another site cannot
make a buyer's browser pay, decline or cancel (whose redirect carries payflow's cancel token).
"""

from __future__ import annotations

import hashlib
import hmac
from html import escape
from importlib.resources import files
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from payflow.sandbox.currencies import format_amount
from payflow.sandbox.errors import StripeApiError
from payflow.sandbox.objects import CheckoutSession, IntentStatus, PaymentStatus, SessionStatus
from payflow.sandbox.runtime import Sandbox
from payflow.sandbox.store import Outcome

# The look shared with payflow's own pages (payflow/pages.py): one stylesheet, inlined.
_STYLE = (files("payflow") / "static" / "pages" / "pages.css").read_text(encoding="utf-8")


def _page(
    title: str, body: str, *, status: int = 200, form_targets: tuple[str | None, ...] = ()
) -> HTMLResponse:
    origins = sorted({_origin(url) for url in form_targets if url})
    csp = (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'; "
        # Browsers check a form's redirect target against form-action too.
        + "form-action 'self'"
        + "".join(f" {origin}" for origin in origins)
    )
    html = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)} · payflow payments sandbox</title>\n<style>{_STYLE}</style>\n"
        f"</head>\n<body>\n<main>\n"
        '<p class="badge">Test mode · payflow payments sandbox</p>\n'
        f"{body}\n</main>\n</body>\n</html>\n"
    )
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Content-Security-Policy": csp,
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _items(session: CheckoutSession) -> str:
    rows = "".join(
        f'<tr><td class="name">{escape(item.name)}</td><td class="num">&times; {item.quantity}</td>'
        f'<td class="num">{format_amount(item.amount, item.currency)}</td></tr>'
        for item in session.line_items
    )
    total = format_amount(session.amount_total, session.currency)
    return (
        f"<table>{rows}</table>\n"
        f'<p class="total"><span>Total</span><span id="total">{total}</span></p>'
    )


CSRF_FIELD = "csrf_token"


def form_token(secret: bytes, session_id: str) -> str:
    """The token the session's forms carry: only a page the sandbox served can know it."""
    return hmac.new(secret, f"checkout-form:{session_id}".encode(), hashlib.sha256).hexdigest()


async def _form_is_genuine(request: Request, secret: bytes, session_id: str) -> bool:
    # Browsers name the site a request came from; when one says "another", that is final.
    if request.headers.get("sec-fetch-site", "same-origin") != "same-origin":
        return False
    fields = parse_qs((await request.body()).decode("latin-1"))
    sent = fields.get(CSRF_FIELD, [""])[0]
    # As bytes: compare_digest refuses str holding non-ASCII characters.
    return hmac.compare_digest(sent.encode(), form_token(secret, session_id).encode())


def _button(
    session: CheckoutSession, token: str, action: str, label: str, *, primary: bool = False
) -> str:
    css = ' class="primary"' if primary else ""
    return (
        f'<form method="post" action="{escape(session.id)}/{action}">'
        f'<input type="hidden" name="{CSRF_FIELD}" value="{escape(token)}">'
        f'<button type="submit" id="{action}"{css}>{escape(label)}</button></form>'
    )


def checkout_page(session: CheckoutSession, token: str) -> HTMLResponse:
    if session.status is not SessionStatus.OPEN:
        return status_page(session)
    total = format_amount(session.amount_total, session.currency)
    buttons = [
        _button(session, token, "pay", f"Pay {total}", primary=True),
        _button(session, token, "pay-later", "Pay later (async)"),
        _button(session, token, "decline", "Decline"),
    ]
    if session.cancel_url:
        buttons.append(_button(session, token, "cancel", "Cancel and return"))
    body = (
        f'<h1 id="status">Pay {total}</h1>\n{_items(session)}\n'
        + "\n".join(buttons)
        + '\n<p class="note">Nothing is charged: this page stands in for Stripe Checkout.</p>'
    )
    return _page("Checkout", body, form_targets=(session.success_url, session.cancel_url))


def status_page(
    session: CheckoutSession, intent_status: IntentStatus | None = None, *, status: int = 200
) -> HTMLResponse:
    if session.status is SessionStatus.EXPIRED:
        headline, text = (
            "This checkout session has expired",
            "Start the purchase again from the shop.",
        )
    elif session.payment_status is PaymentStatus.PAID:
        headline, text = "Payment complete", "Thank you. You can close this page."
    elif intent_status is IntentStatus.REQUIRES_PAYMENT_METHOD:
        headline, text = "Payment failed", "The payment method was declined."
    else:
        headline, text = "Payment processing", "The payment is being confirmed."
    body = f'<h1 id="status">{escape(headline)}</h1>\n{_items(session)}\n<p>{escape(text)}</p>'
    return _page(headline, body, status=status)


def about_page() -> HTMLResponse:
    body = (
        '<h1 id="status">payflow payments sandbox</h1>\n'
        "<p>A stand-in for Stripe, for development and tests: it speaks the part of Stripe's API "
        "payflow uses, serves a hosted checkout page with Pay, Pay later, Decline and Cancel, and "
        "delivers signed webhook events. No money moves and no card is charged.</p>\n"
        "<p>payflow serves it only when <code>STRIPE_SECRET_KEY</code> is unset, and never in "
        "production. A checkout page lives at <code>/sandbox/checkout/&lt;session id&gt;</code>; "
        "start one with <code>POST /api/v1/orders</code> and <code>paymentMethod: GATEWAY</code>."
        "</p>"
    )
    return _page("About", body)


def not_found_page() -> HTMLResponse:
    return _page("Not found", '<h1 id="status">Checkout session not found</h1>', status=404)


def refused_page() -> HTMLResponse:
    body = (
        '<h1 id="status">This form was not sent from the checkout page</h1>\n'
        "<p>Nothing was paid or changed. Open the checkout page again and use its buttons.</p>"
    )
    return _page("Refused", body, status=403)


def build_hosted_router(sandbox: Sandbox) -> APIRouter:
    store = sandbox.store
    router = APIRouter(prefix="/checkout")

    def intent_status(session: CheckoutSession) -> IntentStatus | None:
        intent = store.intents.get(session.payment_intent or "")
        return intent.status if intent else None

    @router.get("/{session_id}", response_class=HTMLResponse)
    async def show_checkout(session_id: str) -> Response:
        session = store.find_session(session_id)
        if session is None:
            return not_found_page()
        if session.status is SessionStatus.OPEN:
            return checkout_page(session, form_token(sandbox.form_secret, session.id))
        return status_page(session, intent_status(session))

    @router.post("/{session_id}/cancel")
    async def cancel(request: Request, session_id: str) -> Response:
        session = store.find_session(session_id)
        if session is None:
            return not_found_page()
        if not await _form_is_genuine(request, sandbox.form_secret, session.id):
            return refused_page()
        if session.status is not SessionStatus.OPEN or not session.cancel_url:
            return status_page(session, intent_status(session), status=409)
        return RedirectResponse(session.cancel_url, status_code=303)

    @router.post("/{session_id}/{action}")
    async def act(request: Request, session_id: str, action: str) -> Response:
        try:
            outcome = Outcome(action)
        except ValueError:
            return not_found_page()
        session = store.find_session(session_id)
        if session is None:
            return not_found_page()
        if not await _form_is_genuine(request, sandbox.form_secret, session.id):
            return refused_page()
        try:
            sandbox.checkout(session_id, outcome)
        except StripeApiError:  # no longer open: say what became of it
            return status_page(session, intent_status(session), status=409)
        redirect = session.success_redirect()
        if redirect is None:  # Stripe shows its own confirmation when there is nowhere to go
            return status_page(session, intent_status(session))
        return RedirectResponse(redirect, status_code=303)

    return router
