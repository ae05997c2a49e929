"""The tracking API, included at the site root: `POST /api/track` (SPEC §13)."""

from __future__ import annotations

from django.urls import path

from tracking import views

urlpatterns = [
    path("api/track", views.track, name="tracking_track"),
]
