from __future__ import annotations

from updates.models.registry import RegistryCheck, RegistryState

__all__ = ["RegistryCheck", "RegistryState"]
