from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from opentrace.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("api/updates/", include("updates.api_urls")),
    path("", include("tracking.urls")),
    path("admin/", include("smtpconfig.urls")),
    path("admin/", include("updates.urls")),
    path("admin/", admin.site.urls),
]
