"""Update history (the read-only UpdateRun admin) and the "System updates" page's place in Settings."""

from __future__ import annotations

from typing import Any, cast

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from opentrace.admin_site import OpenTraceAdminSite
from updates import permissions
from updates.backups_page import may_see_backups
from updates.formatting import format_duration, format_instant
from updates.models import UpdateRun
from updates.outcome import readable_steps

# "System updates" is a custom page listed first in the admin's Settings section.
cast(OpenTraceAdminSite, admin.site).register_settings_page("System updates", "updates_system", order=0)
cast(OpenTraceAdminSite, admin.site).register_settings_page("Update policy", "updates_policy", order=1)
cast(OpenTraceAdminSite, admin.site).register_settings_page(
    "Backups", "updates_backups", allowed=may_see_backups, order=5
)


def _may_see_history(request: HttpRequest) -> bool:
    return permissions.may_see_runs(request.user)


@admin.register(UpdateRun)
class UpdateRunAdmin(admin.ModelAdmin):
    list_display = (
        "requested_when",
        "versions",
        "status_badge",
        "requested_by_name",
        "duration_display",
        "failed_step",
    )
    list_filter = ("status", "requested_at")
    search_fields = ("from_version", "to_version", "git_tag")
    date_hierarchy = "requested_at"
    list_select_related = ("requested_by",)
    list_per_page = 50
    show_full_result_count = False
    # The agent's error and rollback texts are behind the outcome's "Details" (outcome_display).
    fields = (
        "id",
        "run_status",
        "outcome_display",
        "from_version",
        "to_version",
        "git_tag",
        "git_commit",
        "severity",
        "requested_by_name",
        "requested_when",
        "started_when",
        "finished_when",
        "duration_display",
        "failed_step",
        "manifest_display",
    )
    readonly_fields = fields

    @admin.display(description="Requested", ordering="requested_at")
    def requested_when(self, run: UpdateRun) -> str:
        return format_instant(run.requested_at)

    @admin.display(description="Started", ordering="started_at")
    def started_when(self, run: UpdateRun) -> str:
        return format_instant(run.started_at) or "—"

    @admin.display(description="Finished", ordering="finished_at")
    def finished_when(self, run: UpdateRun) -> str:
        return format_instant(run.finished_at) or "—"

    @admin.display(description="Outcome")
    def outcome_display(self, run: UpdateRun) -> str:
        # One sentence, as on System updates; the agent's own words one click away.
        parts = run.outcome_parts()
        if not parts.detail:
            return format_html('<span id="run-headline">{}</span>', parts.headline)
        return format_html(
            '<span id="run-headline">{}</span><details id="run-detail"><summary>Details</summary>'
            '<pre class="ot-detail">{}</pre></details>',
            parts.headline,
            parts.detail,
        )

    @admin.display(description="Registry document")
    def manifest_display(self, run: UpdateRun) -> str:
        # A plain word: a red ✗ next to "Manifest verified" read like an error.
        if run.manifest_verified:
            return "verified with a pinned signing key"
        return "unverified (no registry keys pinned, or the document was not signed)"

    @admin.display(description="Versions", ordering="to_version")
    def versions(self, run: UpdateRun) -> str:
        return f"{run.from_version} → {run.to_version}"

    @admin.display(description="Outcome", ordering="status")
    def status_badge(self, run: UpdateRun) -> str:
        return format_html('<span class="ot-badge {}">{}</span>', run.status, run.get_status_display())

    @admin.display(description="Status")
    def run_status(self, run: UpdateRun) -> str:
        # The run's page has the outcome's sentence under "Outcome"; its state is the badge.
        return self.status_badge(run)

    @admin.display(description="Requested by", ordering="requested_by__username")
    def requested_by_name(self, run: UpdateRun) -> str:
        return run.requested_by.get_username() if run.requested_by else run.requested_by_username or "—"

    @admin.display(description="Duration")
    def duration_display(self, run: UpdateRun) -> str:
        return format_duration(run.duration) or "—"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _may_see_history(request)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _may_see_history(request)

    # History is a record: nobody adds, edits or deletes runs here.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        run = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if run is not None:
            extra["timeline"] = readable_steps(run)
            extra["log"] = run.log_lines()
        return super().change_view(request, object_id, form_url, extra_context=extra)
