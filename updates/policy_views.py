"""Settings → Update policy, and the actions on a scheduled install (SPEC §12).

Wrapped by `admin.site.admin_view` in updates/urls.py like the System updates views;
changing anything needs `updates.install_update`, checked here. What scheduling does is
`updates.schedule`'s business.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from updates import actions, schedule
from updates.forms import UpdatePolicyForm
from updates.models import ScheduledInstall, UpdatePolicy
from updates.views import _require_install_permission, can_install


def update_policy(request: HttpRequest) -> HttpResponse:
    policy = UpdatePolicy.load()
    editable = can_install(request)
    if request.method == "POST":
        user = _require_install_permission(request)
        form = UpdatePolicyForm(request.POST, instance=policy)
        if form.is_valid():
            form.save()
            LogEntry.objects.log_actions(
                user_id=user.pk,
                queryset=[policy],
                action_flag=CHANGE,
                change_message=f"Update policy: {policy.get_mode_display()}; {policy.window.describe()}.",
                single_object=True,
            )
            messages.success(request, "The update policy was saved.")
            return HttpResponseRedirect(reverse("updates_policy"))
    else:
        form = UpdatePolicyForm(instance=policy)
    now = timezone.now()
    context = {
        **admin.site.each_context(request),
        "title": "Update policy",
        "form": form,
        "policy": policy,
        "editable": editable,
        "window_open": policy.window.is_open(now),
        "openings": [schedule.when_label(o, policy) for o in policy.window.openings(now, 3)],
        "scheduled": ScheduledInstall.open(),
    }
    return render(request, "updates/policy.html", context)


def _system() -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("updates_system"))


@require_POST
def cancel_scheduled(request: HttpRequest, scheduled_id: uuid.UUID) -> HttpResponse:
    user = _require_install_permission(request)
    scheduled = get_object_or_404(ScheduledInstall, pk=scheduled_id)
    try:
        schedule.cancel_scheduled(scheduled, by=user)
    except actions.Refused as refused:
        messages.error(request, f"The scheduled install could not be cancelled: {refused.message}")
    else:
        messages.success(request, f"The scheduled install of {scheduled.target_version} was cancelled.")
    return _system()


@require_POST
def reschedule(request: HttpRequest, scheduled_id: uuid.UUID) -> HttpResponse:
    _require_install_permission(request)
    scheduled = get_object_or_404(ScheduledInstall, pk=scheduled_id)
    try:
        when = datetime.fromisoformat(request.POST.get("not_before", ""))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        messages.error(request, "Choose one of the windows offered.")
        return _system()
    try:
        schedule.reschedule(scheduled, when)
    except actions.Refused as refused:
        messages.error(request, f"The install could not be rescheduled: {refused.message}")
    else:
        messages.success(
            request, f"The install of {scheduled.target_version} was moved to {schedule.when_label(when)}."
        )
    return _system()
