"""Notification channels: update notices beyond email (SPEC §10, issue 21).

A channel is a row (`models.NotificationChannel`) with a kind, an encrypted destination and
the notices it gets. Each outbound transport is one boundary module that knows nothing of
Django models: `webhook` (a signed JSON POST) and `chat` (an Apprise URL). `messages`
says what a notice says, `delivery` sends one message to one channel at most once (the
notice log row is the claim), and the Celery tasks in `updates.tasks` retry it.
"""
