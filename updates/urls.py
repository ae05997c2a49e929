"""Admin pages of the update flow, included under /admin/ (before the admin's own URLs)."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin
from django.http import HttpResponse
from django.urls import path

from updates import backups_page, policy_views, views


def _page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    # Staff login required, never cached, CSRF-protected: what every admin view gets.
    return admin.site.admin_view(view)


urlpatterns = [
    path("updates/system/", _page(views.system_updates), name="updates_system"),
    path("updates/system/check/", _page(views.check_now), name="updates_check_now"),
    path("updates/system/skip/", _page(views.skip_version), name="updates_skip"),
    path("updates/system/unskip/", _page(views.unskip_version), name="updates_unskip"),
    path("updates/system/install/", _page(views.install_confirm), name="updates_install_confirm"),
    path("updates/system/install/start/", _page(views.install), name="updates_install"),
    path("updates/system/runs/<uuid:run_id>/cancel/", _page(views.cancel_run), name="updates_cancel"),
    path("updates/system/progress/", _page(views.progress), name="updates_progress"),
    path("updates/policy/", _page(policy_views.update_policy), name="updates_policy"),
    path(
        "updates/system/scheduled/<uuid:scheduled_id>/cancel/",
        _page(policy_views.cancel_scheduled),
        name="updates_scheduled_cancel",
    ),
    path(
        "updates/system/scheduled/<uuid:scheduled_id>/reschedule/",
        _page(policy_views.reschedule),
        name="updates_scheduled_reschedule",
    ),
    path("updates/backups/", _page(backups_page.backups), name="updates_backups"),
]
