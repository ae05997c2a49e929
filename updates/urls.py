"""Admin pages of the update flow, included under /admin/ (before the admin's own URLs)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from updates import views

urlpatterns = [
    path("updates/system/", admin.site.admin_view(views.system_updates), name="updates_system"),
    path("updates/system/check/", admin.site.admin_view(views.check_now), name="updates_check_now"),
    path("updates/system/skip/", admin.site.admin_view(views.skip_version), name="updates_skip"),
    path("updates/system/unskip/", admin.site.admin_view(views.unskip_version), name="updates_unskip"),
]
