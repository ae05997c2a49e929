"""Who may do what on the update pages (SPEC §12), asked in one place.

Staff status only opens the admin; each page and action needs its permission (superusers
have them all): installing, skipping and cancelling `updates.install_update`; the runs'
progress and logs (System updates' run section, its live progress, Update history)
`updates.view_updaterun` or the install permission; "Check now"
`updates.check_for_updates` or the install permission.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser, AnonymousUser

INSTALL = "updates.install_update"
VIEW_RUNS = "updates.view_updaterun"
CHECK = "updates.check_for_updates"


def _staff_with(user: AbstractUser | AnonymousUser, *perms: str) -> bool:
    return bool(user.is_active and user.is_staff and any(user.has_perm(p) for p in perms))


def may_install(user: AbstractUser | AnonymousUser) -> bool:
    return _staff_with(user, INSTALL)


def may_see_runs(user: AbstractUser | AnonymousUser) -> bool:
    return _staff_with(user, VIEW_RUNS, INSTALL)


def may_check(user: AbstractUser | AnonymousUser) -> bool:
    return _staff_with(user, CHECK, INSTALL)
