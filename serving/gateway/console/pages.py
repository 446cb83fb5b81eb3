"""The console's pages: login and logout, the alert queue, the case view and its verdicts.

Pages are rendered on the server (Jinja2, autoescaped); every state change is a POST form with
the session's CSRF token, answered by a redirect (so a reload never repeats it). A verdict goes
through the API's own feedback path (`routers.feedback.submit_feedback`): the label history in
the store, the alert's status and the `labels` topic, in the analyst's name, idempotently.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Path, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from fraudops.schema import ALERT_DECISIONS
from fraudops.store import NotFoundError, Store
from fraudops.store.queue import alert_queue
from serving.exceptions import KafkaUnavailableError
from serving.gateway.console.auth import (
    PREFIX,
    Console,
    ConsoleDep,
    ConsoleRefusal,
    LabellerDep,
    ReaderDep,
    User,
    check_csrf,
    session_of,
)
from serving.gateway.console.case import case_view
from serving.gateway.console.forms import STATUSES, parse_queue_form
from serving.gateway.console.session import ConsoleSession
from serving.gateway.deps import StoreDep
from serving.gateway.principals import Principal, Role
from serving.gateway.routers.feedback import submit_feedback
from serving.gateway.schemas import FeedbackIn, Verdict

router = APIRouter(prefix=PREFIX, include_in_schema=False)
TransactionId = Annotated[str, Path(min_length=1, max_length=128,
                                    pattern=r"^[A-Za-z0-9_.:@/+-]+$")]
#: Headers of every console page: never cached, no script, style or form target but the
#: console's own (a second wall behind the escaping), never framed.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; form-action 'self'; base-uri 'none'; "
                               "frame-ancestors 'none'"}


def render(request: Request, console: ConsoleDep, template: str, status: int = 200,
           **context: object) -> Response:
    """A page (never cached); a `user` in `context` fills the header with the name, the
    navigation and the logout form."""
    response = console.templates.TemplateResponse(
        request, template, {"prefix": _root(request) + PREFIX, **context}, status_code=status)
    response.headers.update(PAGE_HEADERS)
    return response


def _root(request: Request) -> str:
    return request.scope.get("root_path", "")


def redirect(request: Request, path: str) -> RedirectResponse:
    return RedirectResponse(_root(request) + PREFIX + path, status_code=303,
                            headers={"Cache-Control": "no-store"})


@router.get("")
def home(request: Request) -> RedirectResponse:
    return redirect(request, "/queue")


@router.get("/login")
def login_form(request: Request, console: ConsoleDep) -> Response:
    """The login form, with a fresh logged-out session carrying its CSRF token (a user still
    logged in goes to the queue instead)."""
    current = session_of(request, console)
    if current is not None and current.principal in console.principals:
        return redirect(request, _start(console.principals[current.principal]))
    session = ConsoleSession.fresh()
    response = render(request, console, "login.html", csrf=session.csrf)
    console.codec.write(response, session, _root(request) + PREFIX)
    return response


@router.post("/login")
def login(request: Request, console: ConsoleDep, api_key: Annotated[str, Form()] = "",
          csrf_token: Annotated[str, Form()] = "") -> Response:
    """Exchange an API key for a session (a new CSRF token with it); the key is not kept."""
    check_csrf(session_of(request, console), csrf_token)
    client = (request.client.host if request.client else "unknown")
    principal = console.login(client, api_key.strip())
    response = redirect(request, _start(principal))
    console.codec.write(response, ConsoleSession.fresh(principal.name), _root(request) + PREFIX)
    return response


def _start(principal: Principal) -> str:
    """Where a user lands: the queue, or the lists for an admin who cannot read alerts."""
    return "/queue" if principal.may(Role.ANALYST) or principal.may(Role.VIEWER) else "/lists"


@router.post("/logout")
def logout(request: Request, console: ConsoleDep,
           csrf_token: Annotated[str, Form()] = "") -> Response:
    check_csrf(session_of(request, console), csrf_token)
    response = redirect(request, "/login")
    console.codec.clear(response, _root(request) + PREFIX)
    return response


@router.get("/queue")
def queue(request: Request, console: ConsoleDep, user: ReaderDep, store: StoreDep) -> Response:
    """Alerts by risk, filtered, one keyset page (follow the "next" link)."""
    form = parse_queue_form(request.query_params)
    size = console.services.settings.gateway.console_page_size
    page = alert_queue(store, form.filters, size, form.after)
    next_link = form.link(page.next_cursor) if page.next_cursor else None
    return render(request, console, "queue.html", user=user, alerts=page.alerts, form=form,
                  statuses=STATUSES, decisions=ALERT_DECISIONS, next_link=next_link,
                  first_link=form.link(),
                  deeper=form.after is not None)


@router.get("/alerts/{transaction_id}", name="console_case")
def case(transaction_id: TransactionId, request: Request, console: ConsoleDep,
         user: ReaderDep, store: StoreDep, labelled: str = "") -> Response:
    """One alert: the transaction, the model's reasons and version, the verdicts given, the
    account's recent history, and the verdict buttons (for analysts)."""
    try:
        view = case_view(store, transaction_id)
    except NotFoundError:
        raise ConsoleRefusal(404, f"No alert for transaction {transaction_id}.") from None
    return render(request, console, "case.html", user=user, case=view,
                  labelled=labelled if labelled in ("new", "unchanged", "changed", "late")
                  else "")


@router.post("/alerts/{transaction_id}/label")
def label(transaction_id: TransactionId, request: Request, console: ConsoleDep,
          user: LabellerDep, store: StoreDep, verdict: Annotated[str, Form()] = "",
          note: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "") -> Response:
    """Record the analyst's verdict, then show the case again."""
    check_csrf(user.session, csrf_token)
    result = _submit(store, console, user, transaction_id, verdict, note)
    return redirect(request, f"/alerts/{transaction_id}?labelled={result}")


def _submit(store: Store, console: Console, user: User, transaction_id: str, verdict: str,
            note: str) -> str:
    """The feedback path of the API; its outcome (new, unchanged, changed, late)."""
    try:
        feedback = FeedbackIn(transaction_id=transaction_id, verdict=Verdict(verdict),
                              note=note.strip() or None)
    except (ValueError, ValidationError):
        raise ConsoleRefusal(400, "The verdict must be confirmed_fraud or legitimate, and a "
                                  "note at most 2000 characters.") from None
    try:
        answer = submit_feedback(feedback, store, console.services, user.principal)
    except HTTPException as error:
        raise ConsoleRefusal(error.status_code, str(error.detail)) from None
    except KafkaUnavailableError:
        raise ConsoleRefusal(503, "The verdict is recorded but Kafka did not acknowledge it; "
                                  "give it again to publish it.") from None
    return answer.outcome
