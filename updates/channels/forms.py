"""The channel form: the URL is write-only, and checked by its transport before it is saved."""

from __future__ import annotations

from typing import Any

from django import forms

from updates.channels import chat, webhook
from updates.channels.models import NotificationChannel
from updates.notice_kinds import NoticeKind

MAX_URL_CHARS = 2000


class WriteOnlyInput(forms.TextInput):
    """A text box that never renders a value: what was typed is not sent back to the
    browser, not even when the form comes back with an error."""

    def format_value(self, value: Any) -> None:
        return None


class ChannelForm(forms.ModelForm):
    url = forms.CharField(
        label="URL",
        required=False,
        max_length=MAX_URL_CHARS,
        widget=WriteOnlyInput(attrs={"autocomplete": "off", "spellcheck": "false", "size": 80}),
    )
    notices = forms.MultipleChoiceField(
        label="Notices it gets",
        choices=NoticeKind.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="A channel that gets every new version also gets security releases.",
    )
    regenerate_secret = forms.BooleanField(
        required=False,
        label="Generate a new signing secret",
        help_text="The old one stops working at once; the new one is shown once, after saving.",
    )

    class Meta:
        model = NotificationChannel
        fields = ["name", "enabled", "kind", "url", "notices", "regenerate_secret"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        channel: NotificationChannel = self.instance
        url = self.fields["url"]
        if channel.pk:
            # The secret and the URL's checks belong to the kind: it stays what it was made as.
            self.fields["kind"].disabled = True
            url.help_text = f"Stored, encrypted: {channel.url_hint or '…'}. Leave blank to keep it."
            if channel.kind != NotificationChannel.Kind.WEBHOOK:
                del self.fields["regenerate_secret"]
        else:
            url.required = True
            url.help_text = (
                "Webhook: an https:// URL (http:// only for this machine). Chat service: an Apprise "
                "URL such as slack://…, discord://…, ntfy://…, tgram://…. Stored encrypted and never "
                "shown again."
            )
            del self.fields["regenerate_secret"]
            self.initial.setdefault("notices", list(NoticeKind.values))

    def clean_url(self) -> str:
        value: str = self.cleaned_data.get("url") or ""
        return value.strip()

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        url = cleaned.get("url") or ""
        kind = cleaned.get("kind") or self.instance.kind
        if url:
            problem = (
                webhook.url_problem(url)
                if kind == NotificationChannel.Kind.WEBHOOK
                else chat.url_problem(url)
            )
            if problem:
                self.add_error("url", problem)
        elif not self.instance.has_url:
            self.add_error("url", "Enter the URL notices are sent to.")
        return cleaned

    def save(self, commit: bool = True) -> NotificationChannel:
        channel: NotificationChannel = super().save(commit=False)
        channel.notices = [kind for kind in NoticeKind.values if kind in self.cleaned_data.get("notices", [])]
        url = self.cleaned_data.get("url")
        if url:
            hint = webhook.where(url) if channel.kind == NotificationChannel.Kind.WEBHOOK else chat.where(url)
            channel.set_url(url, hint)
        wants_secret = channel.kind == NotificationChannel.Kind.WEBHOOK and (
            not channel.secret_encrypted or self.cleaned_data.get("regenerate_secret")
        )
        # The plaintext lives on the instance until the admin has shown it once.
        channel.shown_once_secret = channel.new_secret() if wants_secret else ""  # type: ignore[attr-defined]  # not a field
        if commit:
            channel.save()
        return channel
