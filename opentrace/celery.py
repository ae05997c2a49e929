"""The Celery application, wired the standard way: settings prefixed CELERY_, tasks autodiscovered."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opentrace.settings")

app = Celery("opentrace")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
