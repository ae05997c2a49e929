from __future__ import annotations

from django.apps import AppConfig


class SmtpConfigConfig(AppConfig):
    name = "smtpconfig"
    verbose_name = "Email"
