"""`{% update_banner %}`: the "update available" banner across the admin (templates/admin/base_site.html).

Shown to active staff (everyone who can open System updates) when the registry offers a
release that is not skipped, stronger for a security or critical one, and while an update
runs; never on the System updates pages themselves, which say it in full.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings

from updates.models import RegistryState, UpdateRun

register = template.Library()

STRONG = ("security", "critical")


@register.inclusion_tag("updates/_banner.html", takes_context=True)
def update_banner(context: Any) -> dict[str, Any]:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not (user.is_active and user.is_staff):
        return {"banner": None}
    match = getattr(request, "resolver_match", None)
    if match is not None and (match.url_name or "").startswith("updates_"):
        return {"banner": None}
    active = UpdateRun.active()
    if active is not None:
        return {"banner": {"kind": "running", "run": active}}
    offer = RegistryState.load().offer()
    latest = offer.latest
    if latest is None or offer.skipped:
        return {"banner": None}
    kind = "strong" if latest.severity in STRONG else "normal"
    return {
        "banner": {
            "kind": kind,
            "version": latest.version,
            "severity": latest.severity,
            "running": settings.OPENTRACE_VERSION,
        }
    }
