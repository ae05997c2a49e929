"""Projects in the admin's Settings: name, enabled, the write key (shown, rotated by an action)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from tracking import keys
from tracking.models import Project


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "project_id", "write_key_display", "enabled", "created_at", "key_rotated_at")
    list_filter = ("enabled",)
    search_fields = ("name",)
    fields = ("name", "enabled", "project_id", "write_key_display", "created_at", "key_rotated_at")
    readonly_fields = ("project_id", "write_key_display", "created_at", "key_rotated_at")
    actions = ["rotate_write_keys"]

    @admin.display(description="project id")
    def project_id(self, obj: Project) -> str:
        return str(obj.pk) if obj.pk else "assigned when saved"

    @admin.display(description="write key")
    def write_key_display(self, obj: Project) -> str:
        if not obj.pk:
            return "generated when saved"
        return format_html(
            '<code class="tracking-write-key">{}</code><div class="help">Send it as the {} header. '
            "Rotating it refuses the old key within {} seconds.</div>",
            obj.write_key,
            keys.HEADER,
            int(keys.ttl()),
        )

    @admin.action(description="Rotate the write key of the selected projects", permissions=["change"])
    def rotate_write_keys(self, request: HttpRequest, queryset: QuerySet[Project]) -> None:
        rotated = []
        for project in queryset:
            project.rotate_key()
            rotated.append(project.name)
        keys.clear_cache()
        self.message_user(
            request,
            f"New write key for {', '.join(rotated)}; SDKs using the old key get 401 within "
            f"{int(keys.ttl())} seconds.",
            messages.SUCCESS,
        )

    def save_model(self, request: HttpRequest, obj: Project, form: object, change: bool) -> None:
        super().save_model(request, obj, form, change)
        keys.clear_cache()  # this process at once; the others within the key TTL
