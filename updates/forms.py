"""The Update policy form (Settings → Update policy)."""

from __future__ import annotations

from typing import Any

from django import forms

from updates.models import UpdatePolicy
from updates.models.policy import time_zone_choices
from updates.window import DAY_NAMES


class UpdatePolicyForm(forms.ModelForm):
    window_days = forms.TypedMultipleChoiceField(
        choices=list(enumerate(DAY_NAMES)),
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Window days",
        help_text="The days of the week a maintenance window opens.",
    )
    time_zone = forms.ChoiceField(choices=time_zone_choices, label="Time zone")

    class Meta:
        model = UpdatePolicy
        fields = ["mode", "window_days", "window_start", "window_minutes", "time_zone"]
        labels = {
            "mode": "Install updates",
            "window_start": "Window opens at",
            "window_minutes": "Window length (minutes)",
        }
        widgets = {
            "mode": forms.RadioSelect,
            "window_start": forms.TimeInput(format="%H:%M", attrs={"type": "time"}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        window_start = self.fields["window_start"]
        assert isinstance(window_start, forms.TimeField)
        window_start.input_formats = ["%H:%M", "%H:%M:%S"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("mode") != UpdatePolicy.Mode.MANUAL and not data.get("window_days"):
            self.add_error(
                "window_days", "Automatic installs need a maintenance window: choose at least one day."
            )
        return data
