from __future__ import annotations

from django.contrib.admin.apps import AdminConfig


class OpenTraceAdminConfig(AdminConfig):
    default_site = "opentrace.admin_site.OpenTraceAdminSite"
