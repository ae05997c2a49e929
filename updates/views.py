"""The "System updates" admin page and its actions (SPEC §12).

Every view is wrapped by `admin.site.admin_view` in updates/urls.py (staff login, no cache,
CSRF); actions that change something also check their permission here, explicitly.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from updates.checking import run_check
from updates.models import RegistryCheck, RegistryState

INSTALL_PERMISSION = "updates.install_update"


def can_install(request: HttpRequest) -> bool:
    return request.user.is_active and request.user.is_staff and request.user.has_perm(INSTALL_PERMISSION)


def _require_install_permission(request: HttpRequest) -> None:
    if not can_install(request):
        raise PermissionDenied("Installing or skipping updates needs the permission updates.install_update.")


def _system_url() -> str:
    return reverse("updates_system")


def registry_context(now: Any = None) -> dict[str, Any]:
    now = now or timezone.now()
    state = RegistryState.load()
    offer = state.offer()
    return {
        "running_version": settings.OPENTRACE_VERSION,
        "channel": settings.OPENTRACE_CHANNEL,
        "state": state,
        "offer": offer,
        "staleness": state.staleness(now),
        "keys_configured": bool(settings.OPENTRACE_REGISTRY_KEYS),
        "last_check": state.last_check,
        "recent_checks": RegistryCheck.objects.order_by("-started_at", "-id")[:10],
        "skipped_versions": state.skipped_versions,
    }


def system_updates(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "System updates",
        "can_install": can_install(request),
        **registry_context(),
    }
    return render(request, "updates/system.html", context)


@require_POST
def check_now(request: HttpRequest) -> HttpResponse:
    check = run_check(RegistryCheck.Trigger.MANUAL)
    if check.outcome == RegistryCheck.Outcome.FAILED:
        messages.error(request, f"The update check failed: {check.error}")
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
