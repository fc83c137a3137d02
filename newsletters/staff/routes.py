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
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user

from newsletters import events
from newsletters.audit.services import record_now as audit_record_now
from newsletters.audit.web import audit
from newsletters.catalog.services import newsletter_by_slug, update_newsletter
from newsletters.extensions import limiter
from newsletters.staff import access, rights, services, throttle
from newsletters.staff.access import admin_required, staff_required
from newsletters.staff.forms import (
    ROLE_LABELS,
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


# --------------------------------------------------------------------------- login


def _login_limit() -> str:
    return current_app.config["RATELIMIT_LOGIN"]


def _login_page(form: LoginForm, status: int, *, failed: bool = False, wait: int = 0):
    response = make_response(
        render_template("staff/login.html", form=form, failed=failed, wait=wait), status
    )
    if wait:
        response.headers["Retry-After"] = str(wait)
    return response


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login():
    form = LoginForm()
    if request.method == "GET":
        form.next.data = access.safe_next(request.args.get("next"))
        if current_user.is_authenticated:
            return redirect(form.next.data or url_for(".dashboard"))
        return render_template("staff/login.html", form=form, failed=False, wait=0)
    form.next.data = access.safe_next(form.next.data)
    if not form.validate():
        return _login_page(form, 422)
    # Failed attempts slow down the place they come from, never the account's owner
    # where they have logged in before (staff/throttle.py).
    attempt = throttle.begin(form.email.data)
    target = f"staff:{attempt.staff.id}" if attempt.staff is not None else "staff:unknown"
    if attempt.retry_after:
        audit_record_now(
            None,
            "staff.login_throttled",
            target,
            {"wait_seconds": attempt.retry_after, "known_place": attempt.known},
            request.remote_addr,
        )
        return _login_page(form, 429, wait=attempt.retry_after)
    staff = services.authenticate(form.email.data, form.password.data)
    if staff is None:
        audit_record_now(
            None, "staff.login_failed", target, {"known_place": attempt.known}, request.remote_addr
        )
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


# --------------------------------------------------------------------------- staff accounts


@bp.get("/users")
@admin_required
def users():
    accounts = services.list_staff()
    return render_template(
        "staff/users.html",
        accounts=accounts,
        limits={a.id: rights.slugs_of(a) for a in accounts},
        names={n.slug: n.name for n in rights.allowed_newsletters(current_user)},
    )


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
                audit("staff.create", f"staff:{staff.id}", email=staff.email, role=staff.role.value)
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
        staff = services.deactivate(staff_id, by_staff_id=current_user.id)
    except services.StaffNotFound:
        abort(404)
    except services.SelfDeactivation:
        flash(_("You cannot deactivate your own account."), "error")
    except services.LastAdmin:
        flash(_("There must be at least one active administrator."), "error")
    else:
        audit("staff.deactivate", f"staff:{staff.id}", email=staff.email)
        flash(_("%(email)s has been deactivated and logged out.", email=staff.email), "success")
    return redirect(url_for(".users"), code=303)


@bp.post("/users/<int:staff_id>/activate")
@admin_required
def user_activate(staff_id: int):
    try:
        staff = services.activate(staff_id)
    except services.StaffNotFound:
        abort(404)
    audit("staff.activate", f"staff:{staff.id}", email=staff.email)
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
            )
            audit(
                "newsletter.settings",
                f"newsletter:{slug}",
                name=form.name.data,
                is_public=bool(form.is_public.data),
                position=form.position.data,
            )
            flash(_("The settings of %(name)s have been saved.", name=form.name.data), "success")
            return redirect(url_for(".dashboard"), code=303)
        return render_template(
            "staff/newsletter_settings.html", form=form, newsletter=newsletter
        ), 422
    return render_template("staff/newsletter_settings.html", form=form, newsletter=newsletter)
