"""What every handler works with: config, database, libvirt host, firewall."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ravada.config import Config
from ravada.db import Database
from ravada.firewall import Firewall

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ravada.virt import Host, Storage

SCREENSHOT_DIR = "/var/lib/ravada/screenshots"


@dataclass(frozen=True)
class Job:
    """One claimed request, detached from its DB session."""

    id: int
    command: str
    args: dict[str, Any]
    machine_id: int | None
    user_id: int | None
    timeout: int | None = None
    deadline: float = math.inf  # time.monotonic() when the request's time is up
    # set by end_in: the handler ended the request in its own last transaction
    _ended: list[bool] = field(default_factory=list, hash=False, compare=False, repr=False)

    def remaining(self) -> float:
        """Seconds left before the deadline (libvirt waits must not outlast it)."""
        return max(0.0, self.deadline - time.monotonic())

    def end_in(self, s: Session, result: dict[str, Any]) -> None:
        """End the request ``done`` with ``result`` in the caller's transaction, with the
        handler's last write: one COMMIT (an fsync on MariaDB) less than the queue's own
        finish after it. The daemon then only announces the end."""
        from ravada import queue

        queue.finish_in(s, self.id, result=result)
        self._ended.append(True)

    @property
    def ended(self) -> bool:
        """True once :meth:`end_in` wrote the end (the daemon announces, not finishes)."""
        return bool(self._ended)


@dataclass
class Context:
    """Shared by the daemon's workers (every member is thread-safe)."""

    config: Config
    db: Database
    host: Host
    firewall: Firewall
    screenshot_dir: Path = field(default_factory=lambda: Path(SCREENSHOT_DIR))
    # background ISO transfers (ravada.back.isolib.Transfers); None: run them inline
    transfers: Any = None
    # this backend's row in ``nodes`` (ravada.back.nodes); None until it registered
    node_id: int | None = None

    @property
    def storage(self) -> Storage:
        return self.host.storage

    @property
    def public_host(self) -> str:
        """What display clients connect to: this node's display address."""
        node = self.config.node
        return (node.display_address or self.config.display.public_host
                or self.config.display.listen)


def make_firewall(config: Config) -> Firewall:
    fw = config.firewall
    return Firewall(chain=fw.chain, port_min=fw.port_min, port_max=fw.port_max,
                    enabled=fw.enabled)
