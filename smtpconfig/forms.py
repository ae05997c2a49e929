"""Admin forms: the SMTP settings (password write-only) and the test email address."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.forms import PasswordResetForm

from smtpconfig.models import SmtpSettings


class SmtpSettingsForm(forms.ModelForm):
    # Write-only: never rendered back (render_value=False), blank keeps the stored one.
    password = forms.CharField(
        required=False,
        strip=False,
        max_length=512,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave blank to keep the stored password.",
    )
    clear_password = forms.BooleanField(required=False, label="Clear the stored password")

    class Meta:
        model = SmtpSettings
        fields = [
            "enabled",
            "host",
            "port",
            "security",
            "username",
            "password",
            "clear_password",
            "from_address",
            "timeout",
            "recipients",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.has_password:
            self.fields["password"].help_text = "A password is stored. Leave blank to keep it."
        else:
            self.fields["password"].help_text = "No password is stored."

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        password = cleaned.get("password") or ""
        if password and cleaned.get("clear_password"):
            raise forms.ValidationError("Either enter a new password or clear the stored one, not both.")
        if any(ch in password for ch in "\r\n\0"):
            self.add_error("password", "The password must not contain line breaks.")
        username = cleaned.get("username") or ""
        keeps_password = self.instance.has_password and not cleaned.get("clear_password")
        if (password or keeps_password) and not username:
            self.add_error("username", "A password needs a username: the server logs in with both.")
        return cleaned

    def save(self, commit: bool = True) -> SmtpSettings:
        row: SmtpSettings = super().save(commit=False)
        if self.cleaned_data.get("clear_password"):
            row.clear_password()
        elif self.cleaned_data.get("password"):
            row.set_password(self.cleaned_data["password"])
        if commit:
            row.save()
        return row


class TestEmailForm(forms.Form):
    to = forms.EmailField(label="Send a test email to", max_length=254)


class BaseUrlPasswordResetForm(PasswordResetForm):
    """Reset links point at OPENTRACE_BASE_URL, not at whatever Host header the request had
    (a forged Host would otherwise put an attacker's domain in the mail)."""

    def save(self, *args: Any, **kwargs: Any) -> None:
        scheme, _, rest = settings.OPENTRACE_BASE_URL.partition("://")
        extra = dict(kwargs.pop("extra_email_context", None) or {})
        extra.setdefault("instance_name", settings.OPENTRACE_INSTANCE_NAME)
        extra.setdefault("base_url", settings.OPENTRACE_BASE_URL)
        kwargs["domain_override"] = rest
        kwargs["use_https"] = scheme == "https"
        kwargs["extra_email_context"] = extra
        super().save(*args, **kwargs)
