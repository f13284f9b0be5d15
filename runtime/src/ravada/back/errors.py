"""The error a handler raises to fail its request with a clear message."""

from __future__ import annotations


class RequestError(Exception):
    """Fails the running request; ``str(err)`` becomes ``Request.error`` as is."""
