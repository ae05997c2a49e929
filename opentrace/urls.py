from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from opentrace import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("healthz/live", health.live, name="healthz-live"),
    path("healthz/ready", health.ready, name="healthz-ready"),
    path("api/updates/", include("updates.api_urls")),
    path("", include("tracking.urls")),
    path("admin/", include("smtpconfig.urls")),
    path("admin/", include("updates.urls")),
    path("admin/", admin.site.urls),
]
