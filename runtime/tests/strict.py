"""Strict mode for CI: ``RAVADA_TEST_STRICT=1`` turns "the thing is missing" skips into failures.

A developer's laptop without KVM, network namespaces, MariaDB or a browser skips those tests
with the reason. CI runs on a host that has them all, so there a skip would hide a broken
fixture behind a green run: :func:`unavailable` fails instead, and the conftest hook fails any
skipped test marked ``kvm``, ``netns``, ``mariadb``, ``browser``, ``ldap`` or ``samba``
(``skipif`` marks, ``importorskip``).
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

STRICT_VAR = "RAVADA_TEST_STRICT"
STRICT_MARKS = ("kvm", "netns", "mariadb", "browser", "ldap", "samba")


def strict() -> bool:
    return os.environ.get(STRICT_VAR, "") not in ("", "0")


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``; in strict mode fail with it instead."""
    if strict():
        pytest.fail(f"{STRICT_VAR} is set, so this cannot be skipped: {reason}", pytrace=False)
    pytest.skip(reason)
