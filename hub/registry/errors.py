"""The registry's errors; NotAllowed (hub.registry.permissions) is the other one callers catch."""

from __future__ import annotations


class RegistryError(Exception):
    """Bad input or a missing object; the message says what to do next."""
