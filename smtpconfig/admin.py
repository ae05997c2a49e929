"""Admin: Settings → SMTP configuration (one row, with "Send test email"), and the notice log."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from smtpconfig import mailer
from smtpconfig.forms import SmtpSettingsForm, TestEmailForm
from smtpconfig.models import NoticeLog, SmtpSettings

logger = logging.getLogger(__name__)

sensitive_password = method_decorator(sensitive_post_parameters("password"))


@admin.register(SmtpSettings)
class SmtpSettingsAdmin(admin.ModelAdmin):
    form = SmtpSettingsForm
    change_form_template = "admin/smtpconfig/smtpsettings/change_form.html"
    fieldsets = [
        (None, {"fields": ["enabled"]}),
        ("Server", {"fields": ["host", "port", "security", "timeout"]}),
        ("Login", {"fields": ["username", "password", "clear_password"]}),
        ("Messages", {"fields": ["from_address", "recipients"]}),
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list:
        return [
            path(
                "test-email/",
                self.admin_site.admin_view(self.test_email_view),
                name="smtpconfig_smtpsettings_test_email",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        # One row: the list would only ever show it, so go straight to it.
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        row = SmtpSettings.load()
        return HttpResponseRedirect(reverse("admin:smtpconfig_smtpsettings_change", args=[row.pk]))

    @sensitive_password
    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        row = SmtpSettings.load()
        if str(object_id) != str(row.pk):
            return HttpResponseRedirect(reverse("admin:smtpconfig_smtpsettings_change", args=[row.pk]))
        if request.method == "GET":
            problem = row.password_problem()
            if problem:
                messages.error(request, f"The stored SMTP password cannot be used. {problem}")
        extra_context = {
            **(extra_context or {}),
            "test_email_form": TestEmailForm(initial={"to": request.user.email}),
            "can_send_test_email": self.has_change_permission(request, row),
            "active_transport": self._active_transport_text(),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    @staticmethod
    def _active_transport_text() -> str:
        try:
            transport = mailer.resolve_transport()
        except mailer.MailError as exc:
            return f"none usable: {exc}"
        if transport.is_console:
            return "none configured: mail is only printed to the server log"
        return transport.describe()

    @method_decorator(require_POST)
    def test_email_view(self, request: HttpRequest) -> HttpResponse:
        row = SmtpSettings.load()
        if not self.has_change_permission(request, row):
            raise PermissionDenied
        back = HttpResponseRedirect(reverse("admin:smtpconfig_smtpsettings_change", args=[row.pk]))
        form = TestEmailForm(request.POST)
        if not form.is_valid():
            messages.error(request, f"Test email not sent: {form.errors['to'][0]}")
            return back
        to = form.cleaned_data["to"]
        try:
            transport = mailer.send_test_email(row, to)
        except mailer.MailError as exc:
            logger.info("Test email to %s failed: %s (%s)", to, exc.kind, exc)
            messages.error(request, f"Test email to {to} failed — {exc}")
        else:
            messages.success(request, f"Test email sent to {to} through {transport.describe()}.")
        return back


@admin.register(NoticeLog)
class NoticeLogAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "kind",
        "key",
        "channel",
        "recipient",
        "status",
        "attempts",
        "sent_at",
        "short_error",
    ]
    list_filter = ["kind", "status", "channel"]
    search_fields = ["key", "recipient", "channel", "subject"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "kind",
        "key",
        "channel",
        "recipient",
        "subject",
        "status",
        "attempts",
        "error",
        "task_id",
        "created_at",
        "updated_at",
        "sent_at",
    ]

    @admin.display(description="error")
    def short_error(self, obj: NoticeLog) -> str:
        return obj.error[:120]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
