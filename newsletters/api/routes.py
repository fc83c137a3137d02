"""The REST API's views: thin, each calling the services the pages and the CLI call.

Every request but the document and its page carries `Authorization: Bearer <token>`;
the blueprint checks the token (401), the view's scope (403) and that a body is JSON
(415) before a view runs, and spectree validates the body and query against the models
that also make the OpenAPI document (422). Refusals are problem details (problems.py).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    jsonify,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from itsdangerous import BadData, URLSafeSerializer
from spectree import Response as Answers
from spectree import SpecTree
from sqlalchemy import select

from newsletters.admin import services as admin_services
from newsletters.api import problems, schemas, tokens
from newsletters.api.problems import Problem
from newsletters.busy import retry_when_busy
from newsletters.catalog.models import Newsletter
from newsletters.catalog.services import newsletter_by_slug, public_newsletter_choices
from newsletters.editions import editing, lifecycle
from newsletters.editions.drafts import ItemInput
from newsletters.editions.models import Edition
from newsletters.editions.states import EditionError
from newsletters.extensions import csrf, db, limiter
from newsletters.mailing.addresses import InvalidAddress, normalise_email
from newsletters.names import InvalidName, clean_name
from newsletters.subscriptions import erasure, intake, lookups
from newsletters.subscriptions.consent import RequestContext
from newsletters.subscriptions.importing import (
    ImportRefused,
    cell_problem,
    import_subscribers,
    normalise_municipality,
)
from newsletters.subscriptions.models import Subscriber
from newsletters.tokens import secret_keys
from newsletters.webhooks import services as webhooks

bp = Blueprint("api", __name__, url_prefix=problems.PREFIX)
csrf.exempt(bp)

F = TypeVar("F", bound=Callable[..., Any])


def _validation_problem(req, resp, error, instance, model_adapter) -> None:
    """spectree's hook: a body or query that does not match its model is a 422 problem
    naming the fields at fault (never echoing what was sent)."""
    if error is None:
        return
    fields = [
        {
            "field": ".".join(str(part) for part in e.get("loc", ())) or "body",
            "message": str(e.get("msg", "invalid")),
        }
        for e in model_adapter.validation_errors(error)
    ]
    raise Problem(422, "The request has fields at fault.", errors=fields)


class _SchemasWhenAsked(SpecTree):
    """spectree, drawing each model's JSON schema when the OpenAPI document is first made.

    spectree draws them as the views are decorated, at import: 120 schemas, 0.15 s at the
    start of every process (the worker and each CLI command too), for a document that only
    the API's readers ask for. The validation of requests uses the models themselves, not
    these schemas. Should a later spectree stop calling `_add_model`, the schemas are
    simply drawn at import again; tests/test_api.py checks the document names them all.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._waiting: list[tuple[Any, str]] = []
        self._drawing = threading.RLock()
        super().__init__(*args, **kwargs)

    def _add_model(self, model: Any, mode: Any = "validation") -> str:
        with self._drawing:
            self._waiting.append((model, mode))
        return self.naming_strategy(model)

    @property
    def models(self) -> dict[str, Any]:
        with self._drawing:
            waiting, self._waiting = self._waiting, []
            for model, mode in waiting:
                SpecTree._add_model(self, model, mode)  # writes into self._drawn
            return self._drawn

    @models.setter
    def models(self, value: dict[str, Any]) -> None:
        self._drawn = value


spec = _SchemasWhenAsked(
    "flask",
    mode="strict",
    # spectree's own routes (pages that load their scripts from a CDN) are not registered:
    # the document and its page are ours, below.
    path="api/v1/spectree",
    page_templates={},
    annotations=False,
    title="KL's newsletters API",
    version="1.0.0",
    description="Subscriptions, subscribers and editions of KL's newsletters. "
    "Errors are RFC 9457 problem details (application/problem+json).",
    security={"bearer": []},
    validation_error_model=schemas.ProblemDetails,
    before=_validation_problem,
)

P = schemas.ProblemDetails
# Every authenticated operation may answer these.
COMMON = {"HTTP_400": P, "HTTP_401": P, "HTTP_403": P, "HTTP_429": P}
WITH_BODY = {**COMMON, "HTTP_413": P, "HTTP_415": P}


def _answers(**codes: Any) -> Answers:
    return Answers(**codes)


def scope(name: str | None, *, json_body: bool = False) -> Callable[[F], F]:
    """The scope a view needs (None: any valid token), and whether it takes a JSON body."""
    assert name is None or name in tokens.SCOPES

    def decorate(view: F) -> F:
        view.api_scope = name  # type: ignore[attr-defined]
        view.api_json_body = json_body  # type: ignore[attr-defined]
        return view

    return decorate


def _public(view: F) -> F:
    view.api_public = True  # type: ignore[attr-defined]
    return view


def _rate_key() -> str:
    """Per token (its hash), so each token has its own limit; per address without one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and tokens.TOKEN_PATTERN.match(token):
        return "api-token:" + tokens.hash_token(token)
    return "api-ip:" + (request.remote_addr or "")


def _rate_limit() -> str:
    return current_app.config["API_RATE_LIMIT"]


limiter.limit(_rate_limit, key_func=_rate_key)(bp)


@bp.record_once
def _set_up(state) -> None:
    problems.init_app(state.app)


@bp.before_request
def _authenticate() -> None:
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None or getattr(view, "api_public", False):
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "Send an API token: Authorization: Bearer <token>.")
    caller = tokens.authenticate(token.strip(), ip=request.remote_addr)
    if caller is None:
        raise Problem(401, "The token is unknown or has been revoked.")
    g.api_caller = caller
    needed = getattr(view, "api_scope", None)
    if needed and needed not in caller.scopes:
        raise Problem(403, f"This token does not have the scope {needed}.")
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        has_body = bool(request.content_length) or "Content-Type" in request.headers
        if getattr(view, "api_json_body", False) or has_body:
            if not request.is_json:
                raise Problem(415, "Send the body as JSON (Content-Type: application/json).")
            if request.get_json(silent=True) is None and (
                request.content_length or getattr(view, "api_json_body", False)
            ):
                raise Problem(400, "The body is not valid JSON (UTF-8).")


def caller() -> tokens.Caller:
    return g.api_caller


def _context(locale: str = "da") -> RequestContext:
    return RequestContext(
        ip=request.remote_addr,
        user_agent=request.headers.get("User-Agent"),
        locale=locale,
        method=f"api:{caller().name}",
    )


def _actor():
    return caller().actor(request.remote_addr)


def _field_error(field: str, message: str) -> Problem:
    return Problem(
        422, "The request has fields at fault.", errors=[{"field": field, "message": message}]
    )


def _check_newsletters(
    slugs: list[str],
    allowed: set[str] | None,
    field: str = "newsletters",
    message: str = "there is no newsletter {slug} open to this token",
) -> None:
    """A 422 naming `field` unless every slug is in `allowed` (None: any) and open to the
    calling token; `message` may name the slug at fault as {slug}."""
    for slug in dict.fromkeys(slugs):
        if (allowed is not None and slug not in allowed) or not tokens.may_use_newsletter(
            caller(), slug
        ):
            raise _field_error(field, message.format(slug=repr(slug[:64])))


def _person(body: schemas.SubscriptionRequest | schemas.Enrolment) -> tuple[str, str]:
    """The body's address and name as they are stored, or a 422 naming the field at fault."""
    try:
        email = normalise_email(body.email)
    except InvalidAddress:
        raise _field_error("email", "not a usable email address") from None
    try:
        name = clean_name(body.name)
    except InvalidName as error:
        raise _field_error("name", str(error)) from None
    return email, name


# --------------------------------------------------------------------------- the document


def openapi_document() -> dict:
    """The OpenAPI 3.1 document, generated from the views and models (cached per app)."""
    cached = current_app.extensions.get("api.openapi")
    if cached is not None:
        return cached
    document = copy.deepcopy(spec.spec)
    document["servers"] = [{"url": "/"}]
    document["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "An API token (nlt_...)."}
    }
    for path_item in document["paths"].values():
        for operation in path_item.values():
            for code, answer in operation.get("responses", {}).items():
                content = answer.get("content")
                if code[:1] in "45" and content and "application/json" in content:
                    answer["content"] = {problems.PROBLEM_TYPE: content.pop("application/json")}
                if code == "429":
                    answer["headers"] = {
                        "Retry-After": {
                            "description": "Seconds to wait before trying again.",
                            "schema": {"type": "string"},
                        }
                    }
    current_app.extensions["api.openapi"] = document
    return document


@bp.get("/openapi.json")
@_public
def openapi_json():
    response = jsonify(openapi_document())
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/docs")
@_public
def docs():
    return render_template("api/docs.html")


SWAGGER_FILES = {"swagger-ui.css", "swagger-ui-bundle.js"}


@bp.get("/docs/assets/<name>")
@_public
def docs_asset(name: str):
    dist = Path(current_app.config["SWAGGER_UI_DIST"] or "")
    if name not in SWAGGER_FILES or not dist.is_dir():
        abort(404)
    return send_from_directory(dist, name, max_age=7 * 86400)


# --------------------------------------------------------------------------- newsletters


@bp.get("/newsletters")
@spec.validate(resp=_answers(HTTP_200=schemas.NewsletterList, **COMMON), tags=["newsletters"])
@scope(None)
def newsletters():
    """The newsletters: slug, name, description, whether anyone may subscribe."""
    rows = db.session.scalars(select(Newsletter).order_by(Newsletter.position, Newsletter.id))
    return schemas.NewsletterList(
        items=[
            schemas.NewsletterOut(
                slug=n.slug, name=n.name, description=n.description_da, public=n.is_public
            )
            for n in rows
            if tokens.may_use_newsletter(caller(), n.slug)
        ]
    )


# --------------------------------------------------------------------------- subscriptions


@bp.post("/subscriptions")
@spec.validate(
    json=schemas.SubscriptionRequest,
    resp=_answers(HTTP_202=schemas.Accepted, **WITH_BODY),
    tags=["subscriptions"],
)
@scope("subscriptions:write", json_body=True)
@retry_when_busy
def subscribe():
    """Ask for a subscription, as the public form does: double opt-in.

    The answer is the same whether or not the address was known, subscribed, suppressed
    or has had its three mails this hour: the confirmation mail (or a link to the
    preference centre) goes out when it may.
    """
    body: schemas.SubscriptionRequest = request.context.json
    email, name = _person(body)
    try:
        municipality = lookups.known_municipality(body.municipality)
    except ValueError:
        raise _field_error("municipality", "not one of the 98 municipalities") from None
    _check_newsletters(body.newsletters, {slug for slug, _ in public_newsletter_choices()})
    intake.accept_subscribe_request(
        email=email,
        slugs=body.newsletters,
        name=name,
        municipality=municipality,
        ctx=_context(body.locale or "da"),
    )
    return schemas.Accepted(
        detail="If the address may be mailed, a confirmation mail is on its way."
    ), 202


# --------------------------------------------------------------------------- subscribers


def _cursors() -> URLSafeSerializer:
    # Signed: a cursor is ours, opaque, and cannot be made up.
    return URLSafeSerializer(list(secret_keys()), salt="api-subscribers-cursor")


def _encode_cursor(after: str) -> str:
    return _cursors().dumps(after)


def _decode_cursor(cursor: str) -> str:
    try:
        after = _cursors().loads(cursor)
    except BadData:
        raise _field_error("cursor", "not a cursor this API gave") from None
    if not isinstance(after, str):
        raise _field_error("cursor", "not a cursor this API gave")
    return after


@bp.get("/subscribers")
@spec.validate(
    query=schemas.SubscribersQuery,
    resp=_answers(HTTP_200=schemas.SubscriberPage, **COMMON),
    tags=["subscribers"],
)
@scope("subscribers:read")
def subscribers():
    """Subscribers, filtered, ordered by address; keyset paging with an opaque cursor."""
    query: schemas.SubscribersQuery = request.context.query
    if query.newsletter:
        _check_newsletters(
            [query.newsletter], None, "newsletter", "this token may not read that newsletter"
        )
    after = _decode_cursor(query.cursor) if query.cursor else None
    page = admin_services.search(
        admin_services.SubscriberFilter(
            newsletter=query.newsletter or "",
            status=query.status or "",
            municipality=query.municipality or "",
            role=query.role or "",
        ),
        after=after,
        per_page=query.limit,
    )
    return schemas.SubscriberPage(
        items=[
            schemas.SubscriberSummary(
                id=row.id,
                email=row.email,
                name=row.name,
                municipality=row.municipality,
                role=row.role,
                mail_stopped=row.stopped,
                subscriptions=[
                    schemas.SubscriptionSummary(newsletter=slug, status=status)
                    for slug, (_name, status) in zip(row.slugs, row.subscriptions, strict=True)
                ],
            )
            for row in page.rows
        ],
        total=page.total,
        next_cursor=_encode_cursor(page.next_after) if page.next_after else None,
    )


@bp.get("/subscribers/<int:subscriber_id>")
@spec.validate(
    resp=_answers(HTTP_200=schemas.SubscriberDetail, HTTP_404=P, **COMMON),
    tags=["subscribers"],
)
@scope("subscribers:read")
def subscriber(subscriber_id: int):
    """One subscriber: details, subscriptions and their consent history."""
    history = admin_services.history(subscriber_id)
    if history is None:
        raise Problem(404, "There is no such subscriber.")
    person = history.subscriber
    return schemas.SubscriberDetail(
        id=person.id,
        email=person.email,
        name=person.name,
        municipality=person.municipality,
        role=person.role,
        locale=person.locale,
        created_at=person.created_at,
        mail_stopped=person.hard_bounced_at is not None,
        suppressed=history.suppressed,
        subscriptions=[
            schemas.SubscriptionDetail(
                newsletter=subscription.newsletter.slug,
                status=subscription.status.value,
                requested_at=subscription.requested_at,
                confirmed_at=subscription.confirmed_at,
                unsubscribed_at=subscription.unsubscribed_at,
                consent_history=[
                    schemas.ConsentEventOut(
                        action=e.action.value,
                        method=e.method,
                        at=e.at,
                        ip=e.ip,
                        user_agent=e.user_agent,
                        consent_text_version=e.consent_text_version,
                        locale=e.locale,
                        basis=e.basis,
                    )
                    for e in events
                ],
            )
            for subscription, events in history.subscriptions
        ],
    )


@bp.post("/subscribers")
@spec.validate(
    json=schemas.Enrolment,
    resp=_answers(HTTP_200=schemas.EnrolmentOutcome, **WITH_BODY),
    tags=["subscribers"],
)
@scope("subscribers:write", json_body=True)
def enrol():
    """Enrol a person on a stated basis, as `flask subscribers import --basis` does.

    No opt-in mail (the welcome mail if asked); an earlier withdrawal is never
    overridden and a suppressed address is left alone. Repeating it changes nothing.
    """
    body: schemas.Enrolment = request.context.json
    email, name = _person(body)
    municipality = normalise_municipality(body.municipality)
    if municipality is None:
        raise _field_error("municipality", "not one of the 98 municipalities")
    if problem := cell_problem("role", body.role.strip()):
        raise _field_error("role", str(problem))
    if not body.basis.strip():
        raise _field_error("basis", "state the basis for the enrolment")
    known = {n.slug for n in db.session.scalars(select(Newsletter))}
    _check_newsletters(body.newsletters, known)
    # The one-row file the import reads (not a spreadsheet for people: no defusing of
    # cells, which would change a name; every cell quoted, quotes doubled).
    cells = [email, name, municipality, body.role.strip()]
    document = "email,name,municipality,role\r\n" + ",".join(
        '"' + cell.replace('"', '""') + '"' for cell in cells
    )
    outcome = schemas.EnrolmentOutcome(
        id=0, enrolled=[], unchanged=[], withdrawn=[], suppressed=False
    )
    for slug in dict.fromkeys(body.newsletters):
        try:
            report = import_subscribers(
                document.encode("utf-8"),
                newsletter_slug=slug,
                basis=body.basis.strip(),
                welcome=body.welcome,
                ctx=_context(),
                file_name=f"api:{caller().name}",
            )
        except ImportRefused as refused:
            raise Problem(
                422,
                "The enrolment was refused.",
                errors=[
                    {"field": "body", "message": str(reason)} for _, reason in refused.problems
                ],
            ) from None
        if report.suppressed:
            outcome.suppressed = True
        elif report.withdrawn:
            outcome.withdrawn.append(slug)
        elif report.enrolled:
            outcome.enrolled.append(slug)
        else:
            outcome.unchanged.append(slug)
    outcome.id = db.session.scalar(select(Subscriber.id).where(Subscriber.email == email)) or 0
    db.session.rollback()
    return outcome


@bp.delete("/subscribers/<int:subscriber_id>")
@spec.validate(
    query=schemas.ErasureQuery,
    resp=_answers(HTTP_204=None, HTTP_404=P, **COMMON),
    tags=["subscribers"],
)
@scope("subscribers:write")
def erase(subscriber_id: int):
    """Erase a subscriber and everything stored about them (as the administrators' page
    does); with `never_again`, only a one-way code of the address stays, suppressed."""
    query: schemas.ErasureQuery = request.context.query
    # The erasure is audited in its own transaction, naming the token.
    if not erasure.erase(subscriber_id, never_again=query.never_again, actor=_actor()):
        raise Problem(404, "There is no such subscriber.")
    return Response(status=204)


# --------------------------------------------------------------------------- editions


def _edition_out(edition_id: int) -> schemas.EditionOut:
    edition = db.session.get(Edition, edition_id)
    p = lifecycle.progress(edition_id)
    return schemas.EditionOut(
        id=edition_id,
        newsletter=edition.newsletter.slug,
        subject=edition.subject,
        status=p.status,
        recipients=p.recipients,
        sent=p.sent,
        failed=p.failed,
        skipped=p.counts.get("skipped", 0),
        remaining=p.remaining,
        possible_duplicates=p.possible_duplicates,
        rate_per_second=p.rate_per_second,
        paused_reason=p.paused_reason,
    )


def _own_edition(edition_id: int) -> Edition:
    edition = db.session.get(Edition, edition_id)
    if edition is None or not tokens.may_use_newsletter(caller(), edition.newsletter.slug):
        raise Problem(404, "There is no such edition.")
    return edition


@bp.post("/editions")
@spec.validate(
    json=schemas.EditionIn,
    resp=_answers(HTTP_201=schemas.EditionOut, **WITH_BODY),
    tags=["editions"],
)
@scope("editions:write", json_body=True)
def create_edition():
    """Create a draft edition (as `flask editions create` does); 201 with its id."""
    body: schemas.EditionIn = request.context.json
    known = {body.newsletter} if newsletter_by_slug(body.newsletter) is not None else set()
    _check_newsletters([body.newsletter], known, "newsletter", "there is no newsletter {slug}")
    try:
        # Audited as `edition.create` by editions, with the token as the channel.
        edition = editing.create_draft(
            newsletter_slug=body.newsletter,
            subject=body.subject,
            body_markdown=body.body,
            preheader=body.preheader,
            items=[ItemInput(i.heading, i.text, i.link) for i in body.items],
            created_by=f"api:{caller().name}",
            actor=_actor(),
        )
    except EditionError as error:
        raise _field_error("body", str(error)) from None
    edition_id = edition.id
    location = url_for(".edition", edition_id=edition_id)
    return _edition_out(edition_id), 201, {"Location": location}


@bp.get("/editions/<int:edition_id>")
@spec.validate(resp=_answers(HTTP_200=schemas.EditionOut, HTTP_404=P, **COMMON), tags=["editions"])
@scope("editions:read")
def edition(edition_id: int):
    """An edition's state and counts, as `flask editions status` shows them."""
    _own_edition(edition_id)
    return _edition_out(edition_id)


def _transition(edition_id: int, action: Callable[..., Any]) -> Any:
    """Carry out a transition through editions' lifecycle (which checks it against the
    edition's state and audits it with the token as the channel); 409 when the state
    forbids it."""
    _own_edition(edition_id)
    try:
        action(edition_id, actor=_actor())
    except EditionError as error:
        db.session.rollback()
        raise Problem(409, str(error)) from None
    return _edition_out(edition_id)


CONTROL = _answers(HTTP_200=schemas.EditionOut, HTTP_404=P, HTTP_409=P, **WITH_BODY)


@bp.post("/editions/<int:edition_id>/send")
@spec.validate(
    resp=_answers(HTTP_202=schemas.EditionOut, HTTP_404=P, HTTP_409=P, **WITH_BODY),
    tags=["editions"],
)
@scope("editions:send")
def send(edition_id: int):
    """Start sending a draft (as `flask editions send`); the worker delivers it."""
    return _transition(edition_id, lifecycle.start_send), 202


@bp.post("/editions/<int:edition_id>/pause")
@spec.validate(resp=CONTROL, tags=["editions"])
@scope("editions:send")
def pause(edition_id: int):
    """Pause a send (as `flask editions pause`)."""
    return _transition(edition_id, lifecycle.pause)


@bp.post("/editions/<int:edition_id>/resume")
@spec.validate(resp=CONTROL, tags=["editions"])
@scope("editions:send")
def resume(edition_id: int):
    """Resume a paused send (as `flask editions resume`)."""
    return _transition(edition_id, lifecycle.resume)


@bp.post("/editions/<int:edition_id>/cancel")
@spec.validate(resp=CONTROL, tags=["editions"])
@scope("editions:send")
def cancel(edition_id: int):
    """Cancel a send or a scheduled edition for good (as `flask editions cancel`)."""
    return _transition(edition_id, lifecycle.cancel)


# --------------------------------------------------------------------------- webhooks


def _webhook_out(endpoint, model=schemas.WebhookOut, **extra: Any):
    return model(
        id=endpoint.id,
        url=endpoint.url,
        events=[e for e in endpoint.events.split(",") if e],
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        created_at=endpoint.created_at,
        last_success_at=endpoint.last_success_at,
        last_error=endpoint.last_error,
        **extra,
    )


@bp.get("/webhooks")
@spec.validate(resp=_answers(HTTP_200=schemas.WebhookList, **COMMON), tags=["webhooks"])
@scope("webhooks:manage")
def webhooks_list():
    """The registered webhook endpoints (never their secrets)."""
    return schemas.WebhookList(items=[_webhook_out(e) for e in webhooks.list_endpoints()])


@bp.post("/webhooks")
@spec.validate(
    json=schemas.WebhookIn,
    resp=_answers(HTTP_201=schemas.WebhookCreated, HTTP_422=P, **WITH_BODY),
    tags=["webhooks"],
)
@scope("webhooks:manage", json_body=True)
def webhooks_add():
    """Register an endpoint for some events; 201 with its signing secret, shown once.
    Loopback and private addresses are refused unless WEBHOOKS_ALLOW_PRIVATE is on."""
    body: schemas.WebhookIn = request.context.json
    try:
        endpoint, secret = webhooks.add_endpoint(body.url, body.events, actor=_actor())
    except webhooks.WebhookError as error:
        db.session.rollback()
        raise _field_error(error.field, str(error)) from None
    location = url_for(".webhooks_list")
    return (
        _webhook_out(endpoint, schemas.WebhookCreated, secret=secret),
        201,
        {"Location": f"{location}/{endpoint.id}"},
    )


@bp.delete("/webhooks/<int:endpoint_id>")
@spec.validate(resp=_answers(HTTP_204=None, HTTP_404=P, **COMMON), tags=["webhooks"])
@scope("webhooks:manage")
def webhooks_remove(endpoint_id: int):
    """Remove an endpoint; its queued deliveries are not sent."""
    if not webhooks.remove_endpoint(endpoint_id, actor=_actor()):
        raise Problem(404, "There is no such webhook.")
    return Response(status=204)
