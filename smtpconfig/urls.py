"""Password reset by email for the admin (included under `admin/` before the admin's own URLs).

The admin login page shows "Forgot your password?" because `admin_password_reset` exists.
The pages use the admin's registration templates; the mail uses ours (plain and HTML).
"""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from smtpconfig.forms import BaseUrlPasswordResetForm

urlpatterns = [
    path(
        "password_reset/",
        auth_views.PasswordResetView.as_view(
            form_class=BaseUrlPasswordResetForm,
            email_template_name="smtpconfig/password_reset_email.txt",
            html_email_template_name="smtpconfig/password_reset_email.html",
            subject_template_name="smtpconfig/password_reset_subject.txt",
            success_url=reverse_lazy("password_reset_done"),
        ),
        name="admin_password_reset",
    ),
    path("password_reset/done/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(success_url=reverse_lazy("password_reset_complete")),
        name="password_reset_confirm",
    ),
    path("reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
]
