"""Admin: Settings → Notification channels, with "Send test" on each channel's page and as
a list action. A webhook's signing secret is shown once, on the page after the save that
made it; the URL and the secret are never rendered back."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from updates.channels import delivery, webhook
from updates.channels.forms import ChannelForm
from updates.channels.models import NotificationChannel
from updates.notice_kinds import NoticeKind

sensitive_url = method_decorator(sensitive_post_parameters("url"))
LABELS = dict(NoticeKind.choices)


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    change_form_template = "admin/updates/notificationchannel/change_form.html"
    list_display = ["name", "enabled", "kind", "destination", "notices_display", "last_result"]
    list_filter = ["enabled", "kind"]
    search_fields = ["name"]
    actions = ["send_test_action"]
    readonly_fields = ["last_result", "created_at", "updated_at"]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list:
        fields = ["name", "enabled", "kind", "url", "notices"]
        if obj is not None and obj.kind == NotificationChannel.Kind.WEBHOOK:
            fields.append("regenerate_secret")
        sets: list = [(None, {"fields": fields})]
        if obj is not None:
            sets.append(("Last delivery", {"fields": ["last_result", "created_at", "updated_at"]}))
        return sets

    @admin.display(description="Sends to")
    def destination(self, channel: NotificationChannel) -> str:
        return channel.url_hint or "…"

    @admin.display(description="Notices")
    def notices_display(self, channel: NotificationChannel) -> str:
        return ", ".join(LABELS.get(kind, kind) for kind in channel.notices) or "none"

    @admin.display(description="Last delivery")
    def last_result(self, channel: NotificationChannel) -> str:
        if not channel.last_outcome:
            return "nothing sent yet"
        when = channel.last_outcome_at.strftime("%Y-%m-%d %H:%M UTC") if channel.last_outcome_at else ""
        if channel.last_outcome == NotificationChannel.Outcome.SENT:
            return f"sent {when}"
        return f"failed {when}: {channel.last_error}"

    # --- add / change: the secret shown once ---------------------------------------------------
    @sensitive_url
    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: Any = None,
    ) -> HttpResponse:
        extra = dict(extra_context or {})
        if object_id is not None and request.method == "GET":
            channel = self.get_object(request, object_id)
            if channel is not None:
                problem = channel.secret_problem()
                if problem:
                    messages.error(request, f"This channel's stored URL or secret cannot be used. {problem}")
                extra["can_send_test"] = self.has_change_permission(request, channel)
        return super().changeform_view(request, object_id, form_url, extra)

    def _secret_page(self, request: HttpRequest, channel: NotificationChannel) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": f"Signing secret of “{channel.name}”",
            "opts": self.opts,
            "channel": channel,
            "secret": channel.shown_once_secret,  # type: ignore[attr-defined]  # the form's, never stored
            "signature_header": webhook.SIGNATURE_HEADER,
            "timestamp_header": webhook.TIMESTAMP_HEADER,
            "change_url": reverse("admin:updates_notificationchannel_change", args=[channel.pk]),
        }
        return TemplateResponse(request, "admin/updates/notificationchannel/secret.html", context)

    def response_add(
        self, request: HttpRequest, obj: NotificationChannel, post_url_continue: Any = None
    ) -> HttpResponse:
        if getattr(obj, "shown_once_secret", ""):
            return self._secret_page(request, obj)
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request: HttpRequest, obj: NotificationChannel) -> HttpResponse:
        if getattr(obj, "shown_once_secret", ""):
            return self._secret_page(request, obj)
        return super().response_change(request, obj)

    # --- send test -------------------------------------------------------------------------
    def get_urls(self) -> list:
        return [
            path(
                "<int:channel_id>/send-test/",
                self.admin_site.admin_view(self.send_test_view),
                name="updates_notificationchannel_send_test",
            ),
            *super().get_urls(),
        ]

    def _report(self, request: HttpRequest, channel: NotificationChannel) -> None:
        result = delivery.send_test(channel)
        (messages.success if result.ok else messages.error)(request, result.sentence)

    @method_decorator(require_POST)
    def send_test_view(self, request: HttpRequest, channel_id: int) -> HttpResponse:
        channel = NotificationChannel.objects.filter(pk=channel_id).first()
        if channel is None:
            messages.error(request, "That notification channel no longer exists.")
            return HttpResponseRedirect(reverse("admin:updates_notificationchannel_changelist"))
        if not self.has_change_permission(request, channel):
            raise PermissionDenied
        self._report(request, channel)
        return HttpResponseRedirect(reverse("admin:updates_notificationchannel_change", args=[channel.pk]))

    @admin.action(description="Send a test notice", permissions=["change"])
    def send_test_action(self, request: HttpRequest, queryset: QuerySet[NotificationChannel]) -> None:
        for channel in queryset.order_by("name"):
            self._report(request, channel)
