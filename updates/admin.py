from __future__ import annotations

from django.contrib import admin

# "System updates" is a custom page listed first in the admin's Settings section.
admin.site.register_settings_page("System updates", "updates_system", order=0)
