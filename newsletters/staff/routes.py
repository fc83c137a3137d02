"""Staff pages: login, the dashboard, staff accounts and newsletter settings (admins)."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user

from newsletters import events, security
from newsletters.catalog.services import newsletter_by_slug, update_newsletter
from newsletters.extensions import db, limiter
from newsletters.staff import access, devices, oidc, rights, services, throttle
from newsletters.staff.access import admin_required, staff_required
from newsletters.staff.forms import (
    ROLE_LABELS,
    InviteForm,
    LoginForm,
    NewsletterRightsForm,
    NewsletterSettingsForm,
    NewStaffForm,
)
from newsletters.staff.twofactor import routes as twofactor_routes
from newsletters.staff.twofactor import services as twofactor

bp = Blueprint("staff", __name__, url_prefix="/staff")
# The session rules (lifetime, idle time, user loader) come with the staff pages.
bp.record_once(lambda state: access.init_app(state.app))
# The second factor's pages: /staff/login/code, /staff/two-factor/...
bp.register_blueprint(twofactor_routes.bp)


@bp.context_processor
def _staff_context() -> dict:
    return {"role_labels": ROLE_LABELS}


def _sso() -> oidc.Settings | None:
    return oidc.settings(current_app.config)


def _local_login() -> bool:
    return bool(current_app.config.get("LOCAL_LOGIN_ENABLED", True))


# --------------------------------------------------------------------------- login


def _login_limit() -> str:
    return current_app.config["RATELIMIT_LOGIN"]


def _login_page(
    form: LoginForm, status: int, *, failed: bool = False, wait: int = 0, refused: bool = False
):
    response = make_response(
        render_template(
            "staff/login.html",
            form=form,
            failed=failed,
            wait=wait,
            refused=refused,
            sso=_sso(),
            local_login=_local_login(),
        ),
        status,
    )
    if wait:
        response.headers["Retry-After"] = str(wait)
    sso = _sso()
    if sso is not None:
        # The SSO button's POST is answered with a redirect to the provider, and a
        # browser holds a form's redirects to the page's form-action too.
        origins = " ".join(oidc.sign_in_origins(sso))
        response.headers["Content-Security-Policy"] = security.CSP.replace(
            "form-action 'self'", f"form-action 'self' {origins}"
        )
    return response


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login():
    form = LoginForm()
    if request.method == "GET":
        form.next.data = access.safe_next(request.args.get("next"))
        if current_user.is_authenticated:
            return redirect(form.next.data or url_for(".dashboard"))
        return _login_page(form, 200)
    form.next.data = access.safe_next(form.next.data)
    if not _local_login():
        # Passwords are off (LOCAL_LOGIN_ENABLED): not even checked.
        services.record_failed_sign_in(
            "local_login_disabled", login_method="password", ip=request.remote_addr
        )
        return _login_page(form, 403, refused=True)
    if not form.validate():
        return _login_page(form, 422)
    # Failed attempts slow down the place they come from, never the account's owner
    # where they have logged in before (staff/throttle.py).
    attempt = throttle.begin(form.email.data)
    target = f"staff:{attempt.staff.id}" if attempt.staff is not None else "staff:unknown"
    if attempt.retry_after:
        events.announce(
            "staff.login_throttled",
            target,
            actor=events.Actor(ip=request.remote_addr, via="web"),
            wait_seconds=attempt.retry_after,
            known_place=attempt.known,
        )
        db.session.commit()
        return _login_page(form, 429, wait=attempt.retry_after)
    staff = services.authenticate(form.email.data, form.password.data)
    if staff is None:
        events.announce(
            "staff.login_failed",
            target,
            actor=events.Actor(ip=request.remote_addr, via="web"),
            known_place=attempt.known,
        )
        db.session.commit()
        # One answer for an unknown address, a wrong password and a deactivated account.
        return _login_page(form, 422, failed=True)
    throttle.succeeded(attempt)
    if twofactor.needed_at_login(staff):
        # Not logged in yet: the code (or setting one up) comes first.
        return twofactor_routes.begin_second_step(staff, attempt, form.next.data)
    # The staff_sessions row it opens records the login (who, when, address, browser).
    access.start_session(staff)
    response = redirect(form.next.data or url_for(".dashboard"), code=303)
    throttle.remember_device(response, attempt)
    return response


# --------------------------------------------------------------------------- single sign-on

FLOW_KEY = "oidc_flow"

# The page a person sees for each reason a sign-in by SSO did not succeed (staff/oidc.py,
# services.sign_in_by_oidc), and its status.
SSO_STATUS = {
    "provider_unavailable": 502,
    "provider_error": 502,
    "unknown_person": 403,
    "no_email": 403,
    "no_role": 403,
    "deactivated": 403,
    "identity_conflict": 403,
    "invitation_expired": 403,
    "denied": 403,
}


def _redirect_uri() -> str:
    # From PUBLIC_BASE_URL, not the request's Host: it must equal the registered one.
    return current_app.config["PUBLIC_BASE_URL"] + url_for(".sso_callback")


def _sso_failed(reason: str, *, target: str = "staff:unknown", detail: str = ""):
    # What the provider or the callback said, as one printable line.
    detail = "".join(ch if ch.isprintable() else "?" for ch in detail[:200])
    services.record_failed_sign_in(
        reason, login_method="oidc", target=target, ip=request.remote_addr, detail=detail
    )
    status = SSO_STATUS.get(reason, 400)
    return render_template("staff/sso_error.html", reason=reason, sso=_sso()), status


@bp.post("/login/sso")
@limiter.limit(_login_limit)
def sso_start():
    # A POST with the CSRF token (CSRFProtect): no link or page can start a sign-in.
    settings = _sso()
    if settings is None:
        abort(404)
    try:
        url, flow = oidc.begin(settings, _redirect_uri())
    except oidc.SsoError as error:
        return _sso_failed(error.reason, detail=error.detail)
    flow["next"] = access.safe_next(request.form.get("next"))
    session[FLOW_KEY] = flow
    return redirect(url, code=303)


@bp.get("/login/sso/callback")
@limiter.limit(_login_limit)
def sso_callback():
    settings = _sso()
    if settings is None:
        abort(404)
    # One use: a replayed callback finds no flow.
    flow = session.pop(FLOW_KEY, None)
    args = {key: value for key, value in request.args.items() if isinstance(value, str)}
    try:
        identity = oidc.finish(settings, flow, args, _redirect_uri())
        staff = services.sign_in_by_oidc(identity, ip=request.remote_addr)
    except oidc.SsoError as error:
        target = error.detail if error.detail.startswith("staff:") else "staff:unknown"
        return _sso_failed(error.reason, target=target, detail=error.detail)
    next_url = flow.get("next") if isinstance(flow, dict) else None
    access.start_session(staff, login_method="oidc")
    return redirect(access.safe_next(next_url) or url_for(".dashboard"), code=303)


@bp.post("/logout")
def logout():
    # POST only, and CSRFProtect has checked the token: no page can log a person out.
    access.end_session()
    flash(_("You are logged out."), "success")
    return redirect(url_for(".login"), code=303)


# --------------------------------------------------------------------------- dashboard


@bp.get("/")
@staff_required
def dashboard():
    allowed = {n.id for n in access.allowed_newsletters(current_user)}
    return render_template(
        "staff/dashboard.html",
        newsletters=[n for n in services.newsletter_overview() if n.id in allowed],
    )


# --------------------------------------------------------------------------- sessions


def _session_rows(staff_id: int) -> list[dict]:
    return [
        {"record": record, "device": devices.describe(record.user_agent)}
        for record in services.active_sessions(staff_id)
    ]


@bp.get("/sessions")
@staff_required
def sessions():
    return render_template(
        "staff/sessions.html",
        account=current_user,
        rows=_session_rows(current_user.id),
        current_id=access.current_session_id(),
        own=True,
    )


@bp.post("/sessions/<int:session_id>/end")
@staff_required
def session_end(session_id: int):
    current_id = access.current_session_id()
    if not services.end_session(
        session_id, owner_id=current_user.id, actor=events.Actor.of_request()
    ):
        abort(404)
    if session_id == current_id:
        access.end_session()
        flash(_("You are logged out."), "success")
        return redirect(url_for(".login"), code=303)
    flash(_("The session has been ended."), "success")
    return redirect(url_for(".sessions"), code=303)


@bp.post("/sessions/end-others")
@staff_required
def sessions_end_others():
    count = services.end_sessions(
        current_user.id,
        keep_session_id=access.current_session_id(),
        actor=events.Actor.of_request(),
    )
    flash(
        ngettext(
            "%(num)d other session has been ended.",
            "%(num)d other sessions have been ended.",
            count,
        ),
        "success",
    )
    return redirect(url_for(".sessions"), code=303)


@bp.get("/users/<int:staff_id>/sessions")
@admin_required
def user_sessions(staff_id: int):
    account = services.staff_by_id(staff_id)
    if account is None:
        abort(404)
    return render_template(
        "staff/sessions.html",
        account=account,
        rows=_session_rows(account.id),
        current_id=access.current_session_id(),
        own=account.id == current_user.id,
    )


@bp.post("/users/<int:staff_id>/sessions/<int:session_id>/end")
@admin_required
def user_session_end(staff_id: int, session_id: int):
    current_id = access.current_session_id()
    if not services.end_session(session_id, owner_id=staff_id, actor=events.Actor.of_request()):
        abort(404)
    if session_id == current_id:
        access.end_session()
        return redirect(url_for(".login"), code=303)
    flash(_("The session has been ended."), "success")
    return redirect(url_for(".user_sessions", staff_id=staff_id), code=303)


@bp.post("/users/<int:staff_id>/sessions/end")
@admin_required
def user_sessions_end(staff_id: int):
    if services.staff_by_id(staff_id) is None:
        abort(404)
    keep = access.current_session_id() if staff_id == current_user.id else None
    count = services.end_sessions(staff_id, keep_session_id=keep, actor=events.Actor.of_request())
    flash(
        ngettext("%(num)d session has been ended.", "%(num)d sessions have been ended.", count),
        "success",
    )
    return redirect(url_for(".user_sessions", staff_id=staff_id), code=303)


# --------------------------------------------------------------------------- staff accounts


def _users_page(invite_form: InviteForm | None = None, status: int = 200):
    accounts = services.list_staff()
    return render_template(
        "staff/users.html",
        accounts=accounts,
        invitations=services.invitation_rows(),
        invitation_days=current_app.config["STAFF_INVITATION_MAX_AGE_DAYS"],
        invite_form=invite_form or InviteForm(),
        sso=_sso(),
        limits={a.id: rights.slugs_of(a) for a in accounts},
        names={n.slug: n.name for n in rights.allowed_newsletters(current_user)},
    ), status


@bp.get("/users")
@admin_required
def users():
    return _users_page()


@bp.post("/invitations")
@admin_required
def invite():
    form = InviteForm()
    if form.validate():
        try:
            invitation = services.invite(
                form.email.data, form.role.data, actor=events.Actor.of_request()
            )
        except services.InvalidEmail:
            form.email.errors.append(_("Enter a valid email address, for example navn@kl.dk."))
        except services.AlreadyStaff:
            form.email.errors.append(_("There is a staff account with this address already."))
        except services.StaffError:
            form.email.errors.append(_("The invitation could not be saved. Try again."))
        else:
            flash(
                _(
                    "%(email)s can now sign in by single sign-on.",
                    email=invitation.email,
                ),
                "success",
            )
            return redirect(url_for(".users"), code=303)
    db.session.rollback()
    return _users_page(form, 422)


@bp.post("/invitations/<int:invitation_id>/withdraw")
@admin_required
def invitation_withdraw(invitation_id: int):
    invitation = services.withdraw_invitation(invitation_id, actor=events.Actor.of_request())
    if invitation is None:
        abort(404)
    flash(_("The invitation for %(email)s has been withdrawn.", email=invitation.email), "success")
    return redirect(url_for(".users"), code=303)


@bp.route("/users/<int:staff_id>/newsletters", methods=["GET", "POST"])
@admin_required
def user_newsletters(staff_id: int):
    """An administrator limits an editor to some newsletters (none ticked: all)."""
    staff = services.staff_by_id(staff_id)
    if staff is None:
        abort(404)
    choices = [(n.slug, n.name) for n in rights.allowed_newsletters(current_user)]
    form = NewsletterRightsForm(choices=choices)
    if request.method == "GET":
        form.newsletters.data = rights.slugs_of(staff) or []
        return render_template("staff/user_newsletters.html", form=form, account=staff)
    if not form.validate():
        return render_template("staff/user_newsletters.html", form=form, account=staff), 422
    new = rights.set_newsletters(staff.id, form.newsletters.data, actor=events.Actor.of_request())
    if new:
        flash(
            _(
                "%(email)s may now work on %(newsletters)s only.",
                email=staff.email,
                newsletters=", ".join(dict(choices)[slug] for slug in new),
            ),
            "success",
        )
    else:
        flash(_("%(email)s may now work on every newsletter.", email=staff.email), "success")
    return redirect(url_for(".users"), code=303)


@bp.route("/users/new", methods=["GET", "POST"])
@admin_required
def user_new():
    form = NewStaffForm()
    if request.method == "POST":
        if form.validate():
            try:
                staff = services.create_staff(
                    form.email.data,
                    role=form.role.data,
                    password=form.password.data,
                    name=form.name.data or "",
                    actor=events.Actor.of_request(),
                )
            except services.InvalidEmail:
                form.email.errors.append(_("Enter a valid email address, for example navn@kl.dk."))
            except services.EmailTaken:
                form.email.errors.append(_("There is a staff account with this address already."))
            except services.WeakPassword:
                form.password.errors.append(
                    _("Choose another password: at least 12 characters, not the address.")
                )
            else:
                flash(
                    _("The account for %(email)s has been created.", email=staff.email), "success"
                )
                return redirect(url_for(".users"), code=303)
        return render_template("staff/user_new.html", form=form), 422
    return render_template("staff/user_new.html", form=form)


@bp.post("/users/<int:staff_id>/deactivate")
@admin_required
def user_deactivate(staff_id: int):
    try:
        staff = services.deactivate(
            staff_id, by_staff_id=current_user.id, actor=events.Actor.of_request()
        )
    except services.StaffNotFound:
        abort(404)
    except services.SelfDeactivation:
        flash(_("You cannot deactivate your own account."), "error")
    except services.LastAdmin:
        flash(_("There must be at least one active administrator."), "error")
    else:
        flash(_("%(email)s has been deactivated and logged out.", email=staff.email), "success")
    return redirect(url_for(".users"), code=303)


@bp.post("/users/<int:staff_id>/activate")
@admin_required
def user_activate(staff_id: int):
    try:
        staff = services.activate(staff_id, actor=events.Actor.of_request())
    except services.StaffNotFound:
        abort(404)
    flash(_("%(email)s can log in again.", email=staff.email), "success")
    return redirect(url_for(".users"), code=303)


# --------------------------------------------------------------------------- newsletters


@bp.route("/newsletters/<slug>/settings", methods=["GET", "POST"])
@admin_required
def newsletter_settings(slug: str):
    access.require_newsletter(slug)
    newsletter = newsletter_by_slug(slug)
    if newsletter is None:
        abort(404)
    form = NewsletterSettingsForm(obj=newsletter)
    if request.method == "POST":
        if form.validate():
            update_newsletter(
                slug,
                name=form.name.data,
                description_da=form.description_da.data,
                description_en=form.description_en.data or "",
                cadence_da=form.cadence_da.data,
                cadence_en=form.cadence_en.data or "",
                is_public=bool(form.is_public.data),
                position=form.position.data,
                archive_public=bool(form.archive_public.data),
                engagement_counting=bool(form.engagement_counting.data),
                actor=events.Actor.of_request(),
            )
            flash(_("The settings of %(name)s have been saved.", name=form.name.data), "success")
            return redirect(url_for(".dashboard"), code=303)
        return render_template(
            "staff/newsletter_settings.html", form=form, newsletter=newsletter
        ), 422
    return render_template("staff/newsletter_settings.html", form=form, newsletter=newsletter)
