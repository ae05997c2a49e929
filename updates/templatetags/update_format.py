"""Template filters for the update pages: one way to write instants, durations and check errors."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template

from updates.formatting import describe_check_error, format_duration, format_instant

register = template.Library()


@register.filter(name="utc_instant")
def utc_instant(value: datetime | None) -> str:
    return format_instant(value)


@register.filter(name="duration")
def duration(value: timedelta | float | None) -> str:
    return format_duration(value)


@register.filter(name="check_error")
def check_error(error: str | None) -> str:
    return describe_check_error(error or "")
