from __future__ import annotations

from django.apps import AppConfig


class OpenTraceConfig(AppConfig):
    name = "opentrace"
    verbose_name = "OpenTrace"
