"""The "System updates" admin page and its actions (SPEC §12): parsing requests, rendering answers.

Every view is wrapped by `admin.site.admin_view` in updates/urls.py (staff login, no cache,
CSRF); actions that change something also check their permission here, explicitly. What an
action does, and when it is refused, is `updates.actions`' and `updates.rules`' business.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from contract.offer import Offer
from updates import actions, permissions, policy_context, schedule, serializers, system_page
from updates.checking import run_check
from updates.formatting import describe_check_error
from updates.models import AgentHeartbeat, RegistryCheck, RegistryState, UpdateRun


def can_install(request: HttpRequest) -> bool:
    return permissions.may_install(request.user)


def _require_install_permission(request: HttpRequest) -> AbstractBaseUser:
    """The user, when they may install; else PermissionDenied."""
    user = request.user
    if not can_install(request) or isinstance(user, AnonymousUser):
        raise PermissionDenied(f"Installing or skipping updates needs the permission {permissions.INSTALL}.")
    return user


def _system_url() -> str:
    return reverse("updates_system")


def system_updates(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "System updates",
        **system_page.system_context(
            can_install=can_install(request),
            can_see_runs=permissions.may_see_runs(request.user),
            can_check=permissions.may_check(request.user),
        ),
    }
    return render(request, "updates/system.html", context)


def install_confirm(request: HttpRequest) -> HttpResponse:
    _require_install_permission(request)
    state = RegistryState.load()
    offer = state.offer()
    if offer.latest is None:
        messages.error(request, "No newer release is offered.")
        return HttpResponseRedirect(_system_url())
    shown = request.GET.get("version")
    if shown and shown != offer.latest.version:
        messages.error(request, "The offered release changed since the page was shown; review it again.")
        return HttpResponseRedirect(_system_url())
    context = {
        **admin.site.each_context(request),
        "title": f"Install OpenTrace {offer.latest.version}?",
        **system_page.registry_context(),
        "release": offer.latest,
        "previous_failure": system_page.previous_failure(offer.latest.version),
        "agent": AgentHeartbeat.status(),
        "refusal": _confirm_refusal(state, offer),
        "idempotency_key": uuid.uuid4().hex,
        "document_sha256": state.document_sha256,
        **policy_context.confirm_additions(state, offer.latest),
    }
    return render(request, "updates/install_confirm.html", context)


def _confirm_refusal(state: RegistryState, offer: Offer) -> str | None:
    """Why neither "install now" nor "schedule" can be confirmed; an upgrade path is no refusal."""
    return system_page.page_refusal(state, None)


@require_POST
def install(request: HttpRequest) -> HttpResponse:
    user = _require_install_permission(request)
    try:
        key = uuid.UUID(request.POST.get("idempotency_key", "")).hex
    except ValueError:
        messages.error(request, "The form was incomplete; please confirm again.")
        return HttpResponseRedirect(_system_url())
    version = request.POST.get("version", "")
    digest = request.POST.get("document_sha256", "")
    again = request.POST.get("again") == "1"
    if request.POST.get("when") == "window" or len(RegistryState.load().offer().path) > 1:
        return _schedule(request, user, version=version, digest=digest, again=again)
    try:
        run = actions.request_install(
            user=user, idempotency_key=key, version=version, document_sha256=digest, again=again
        )
    except actions.Refused as refused:
        messages.error(request, f"The update was not started: {refused.message}")
    else:
        # The page's live script removes this once the agent has taken the run over.
        messages.success(
            request, f"The update to {run.to_version} was requested; the host agent will pick it up shortly."
        )
    return HttpResponseRedirect(_system_url())


def _schedule(
    request: HttpRequest, user: AbstractBaseUser, *, version: str, digest: str, again: bool
) -> HttpResponse:
    """Install in the next window, or start an upgrade path now (`updates.schedule`)."""
    in_window = request.POST.get("when") == "window"
    try:
        if in_window:
            scheduled = schedule.schedule_install(user=user, version=version, digest=digest, again=again)
        else:
            scheduled = schedule.install_path_now(user=user, version=version, digest=digest, again=again)
    except actions.Refused as refused:
        verb = "scheduled" if in_window else "started"
        messages.error(request, f"The update was not {verb}: {refused.message}")
        return HttpResponseRedirect(_system_url())
    if in_window:
        messages.success(
            request,
            f"{scheduled.path_display} will be installed on {schedule.when_label(scheduled.not_before)}; "
            "you can cancel or reschedule it below.",
        )
    else:
        messages.success(
            request,
            f"The update to {scheduled.path_display} was requested; each release is installed after the "
            "previous one succeeded.",
        )
    return HttpResponseRedirect(_system_url())


@require_POST
def cancel_run(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    user = _require_install_permission(request)
    run = get_object_or_404(UpdateRun, pk=run_id)
    try:
        actions.cancel_run(run, by=user)
    except actions.Refused as refused:
        messages.error(request, f"The update could not be cancelled: {refused.message}")
    else:
        messages.success(request, f"The update to {run.to_version} was cancelled.")
    return HttpResponseRedirect(_system_url())


@require_GET
def progress(request: HttpRequest) -> JsonResponse:
    """The current run's progress for the page's polling script."""
    if not permissions.may_see_runs(request.user):
        raise PermissionDenied(f"The runs' progress needs the permission {permissions.VIEW_RUNS}.")
    run_id = request.GET.get("run")
    if run_id:
        try:
            run = UpdateRun.objects.filter(pk=uuid.UUID(run_id)).first()
        except ValueError:
            raise Http404("no such run") from None
        if run is None:
            raise Http404("no such run")
    else:
        run = system_page.current_run()
    seen = request.GET.get("seen") or None
    body = serializers.progress(running_version=settings.OPENTRACE_VERSION, run=run, seen=seen)
    if can_install(request):
        body["install_refusal"] = system_page.page_refusal(RegistryState.load(), run)
    return JsonResponse(body)


@require_POST
def check_now(request: HttpRequest) -> HttpResponse:
    if not permissions.may_check(request.user):
        raise PermissionDenied(f"Checking for updates needs the permission {permissions.CHECK}.")
    check = run_check(RegistryCheck.Trigger.MANUAL)
    if check.outcome == RegistryCheck.Outcome.FAILED:
        # The sentence only: the page's "Last check" row has the details.
        messages.error(request, f"The update check failed: {describe_check_error(check.error)}")
    else:
        offer = RegistryState.load().offer()
        if offer.update_available and offer.latest:
            messages.success(request, f"Version {offer.latest.version} is available.")
        else:
            messages.success(request, "The update check succeeded; no new version is offered.")
    return HttpResponseRedirect(_system_url())


def _skip_action(request: HttpRequest, *, skip: bool) -> HttpResponse:
    _require_install_permission(request)
    version = request.POST.get("version", "")
    try:
        state = RegistryState.load()
        if skip:
            state.skip(version)
        else:
            state.unskip(version)
    except ValueError:
        messages.error(request, "That is not a version.")
        return HttpResponseRedirect(_system_url())
    if skip:
        messages.success(request, f"Version {version} will not be offered again.")
    else:
        messages.success(request, f"Version {version} is offered again.")
    return HttpResponseRedirect(_system_url())


@require_POST
def skip_version(request: HttpRequest) -> HttpResponse:
    return _skip_action(request, skip=True)


@require_POST
def unskip_version(request: HttpRequest) -> HttpResponse:
    return _skip_action(request, skip=False)
