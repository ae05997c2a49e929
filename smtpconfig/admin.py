"""Admin: Settings → SMTP configuration (one row, with "Send test email"), and the notice log."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
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
            "test_email_form": TestEmailForm(initial={"to": getattr(request.user, "email", "")}),
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

    def save_model(self, request: HttpRequest, obj: SmtpSettings, form: ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if obj.enabled and form.has_changed():
            # Saved as asked; but a configuration that cannot reach its server must not look fine.
            problem = self._connection_problem(obj)
            if problem:
                messages.warning(
                    request,
                    f"Saved and enabled, but the server does not accept these settings: {problem} "
                    "All mail (password resets, notices) fails until this is fixed.",
                )

    @staticmethod
    def _connection_problem(row: SmtpSettings) -> str | None:
        """Why the server cannot be used with `row` (connect, TLS, login; no message sent), or None."""
        transport = None
        try:
            transport = mailer.transport_from_row(row)
            connection = transport.connection(fail_silently=False)
            try:
                connection.open()
            finally:
                connection.close()
        except mailer.MailError as exc:
            return str(exc)
        except Exception as exc:
            return str(mailer.classify(exc, transport))
        return None

    @method_decorator(require_POST)
    @sensitive_password
    def test_email_view(self, request: HttpRequest) -> HttpResponse:
        """Send a test email. With the settings form's fields posted (the button inside the
        form), it goes through the settings as they are in the form, saved or not; otherwise
        through the saved ones. Answers JSON to the page's script, else redirects back."""
        row = SmtpSettings.load()
        if not self.has_change_permission(request, row):
            raise PermissionDenied
        ok, text = self._send_test(request, row)
        if "application/json" in request.headers.get("Accept", ""):
            return JsonResponse({"ok": ok, "message": text})
        (messages.success if ok else messages.error)(request, text)
        return HttpResponseRedirect(reverse("admin:smtpconfig_smtpsettings_change", args=[row.pk]))

    def _send_test(self, request: HttpRequest, row: SmtpSettings) -> tuple[bool, str]:
        form = TestEmailForm(request.POST)
        if not form.is_valid():
            return False, f"Test email not sent: {form.errors['to'][0]}"
        to = form.cleaned_data["to"]
        unsaved = "host" in request.POST
        if unsaved:
            settings_form = SmtpSettingsForm(request.POST, instance=row)
            if not settings_form.is_valid():
                field, errors = next(iter(settings_form.errors.items()))
                where = "" if field == "__all__" else f" ({settings_form.fields[field].label or field})"
                return (
                    False,
                    f"Test email not sent: the settings in the form are not valid{where}: {errors[0]}",
                )
            row = settings_form.save(commit=False)  # tried, never saved here
        try:
            transport = mailer.send_test_email(row, to)
        except mailer.MailError as exc:
            logger.info("Test email to %s failed: %s (%s)", to, exc.kind, exc)
            return False, f"Test email to {to} failed — {exc}"
        how = " with the settings in the form (not saved yet)" if unsaved and self._differs(row) else ""
        return True, f"Test email sent to {to} through {transport.describe()}{how}."

    @staticmethod
    def _differs(candidate: SmtpSettings) -> bool:
        saved = SmtpSettings.load()
        fields = ("host", "port", "security", "username", "password_encrypted", "from_address", "timeout")
        return any(getattr(saved, name) != getattr(candidate, name) for name in fields)


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
