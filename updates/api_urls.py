"""The agent API, included under /api/updates/ (SPEC §6)."""

from __future__ import annotations

from django.urls import path

from updates import agent_api, backups_api

urlpatterns = [
    path("agent/events", agent_api.events, name="updates_agent_events"),
    path("agent/heartbeat", agent_api.heartbeat, name="updates_agent_heartbeat"),
    path("agent/backups", backups_api.backups, name="updates_agent_backups"),
]
