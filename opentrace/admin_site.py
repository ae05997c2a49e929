"""The admin site: Django's, with OpenTrace's operator pages grouped under "Settings".

Models of the `updates`, `smtpconfig` and `tracking` apps, and custom pages registered with
`register_settings_page()` (e.g. "System updates"), appear together in one "Settings"
section of the admin index and sidebar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib import admin
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse

SETTINGS_APPS = ("updates", "smtpconfig", "tracking")


@dataclass(frozen=True)
class SettingsPage:
    name: str
    url_name: str
    allowed: Callable[[HttpRequest], bool]
    order: int = 0


class OpenTraceAdminSite(admin.AdminSite):
    site_header = "OpenTrace administration"
    site_title = "OpenTrace admin"
    index_title = "Administration"
    # This repository serves no public site at "/": a "View site" link would lead to a 404.
    site_url = None

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)
        self._settings_pages: list[SettingsPage] = []

    def register_settings_page(
        self,
        name: str,
        url_name: str,
        allowed: Callable[[HttpRequest], bool] = lambda request: request.user.is_staff,
        order: int = 0,
    ) -> None:
        self._settings_pages = [p for p in self._settings_pages if p.url_name != url_name]
        self._settings_pages.append(SettingsPage(name, url_name, allowed, order))

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict]:
        apps = super().get_app_list(request, app_label)
        if app_label is not None and app_label not in SETTINGS_APPS:
            return apps
        models: list[dict] = []
        for page in sorted(self._settings_pages, key=lambda p: p.order):
            if not page.allowed(request):
                continue
            try:
                url = reverse(page.url_name)
            except NoReverseMatch:
                continue
            models.append(
                {
                    "name": page.name,
                    "object_name": page.url_name,
                    "admin_url": url,
                    "view_only": True,
                    "perms": {},
                }
            )
        rest = []
        for app in apps:
            if app["app_label"] in SETTINGS_APPS:
                models.extend(app["models"])
            else:
                rest.append(app)
        if not models:
            return rest
        settings_app = {
            "name": "Settings",
            "app_label": "settings",
            "app_url": models[0]["admin_url"],
            "has_module_perms": True,
            "models": models,
        }
        return [settings_app, *rest]
