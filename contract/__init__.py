"""What SPEC §4-§6 fix, written once for both sides of the update protocol.

The backend (`updates/`) and the host agent (`host_agent/`) both import this package, so the
formats they exchange cannot drift apart: the registry document (`registry`, `offer`), the
trigger file (`trigger`, over the safe file primitives of `files`), the HMAC signatures
(`signing`), the pinned registry keys (`keys`), strict JSON for untrusted bytes (`jsonsafe`)
and the shapes and names of events and heartbeats (`events`).

It imports nothing of the project and no Django, and runs on the host's Python (3.10 or
newer) with only the standard library, `packaging` and `cryptography`.
"""
