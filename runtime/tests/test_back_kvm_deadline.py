"""A request's deadline on real QEMU: a guest that ignores ACPI cannot pin a worker."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kvm import POOL, Cleanup

from ravada import config as rconfig
from ravada import queue
from ravada.back.daemon import Daemon
from ravada.db import Database, Machine
from ravada.db.migrate import upgrade
from ravada.virt import Host, render_domain

pytestmark = pytest.mark.kvm
IPXE = "/usr/lib/ipxe/ipxe.iso"


@pytest.fixture
def daemon(kvm_host: Host, tmp_path: Path) -> Iterator[Daemon]:
    cfg = rconfig.from_dict({
        "database": {"url": f"sqlite:///{tmp_path / 'ravada.db'}"},
        "libvirt": {"uri": "qemu:///system", "storage_pool": POOL},
        "queue": {"socket": str(tmp_path / "queue.sock")},
        "display": {"listen": "127.0.0.1"},
        "firewall": {"enabled": False},
    })
    db = Database(cfg.database.url)
    upgrade(db.engine)
    d = Daemon(cfg, db=db, host=kvm_host, screenshot_dir=tmp_path / "shots", stop_wait=2)
    d.start()
    thread = threading.Thread(target=d.run, daemon=True)
    thread.start()
    yield d
    d.stop()
    thread.join(10)
    d.close()
    db.dispose()


def test_shutdown_of_a_guest_ignoring_acpi_ends_within_its_deadline(
        daemon: Daemon, kvm_host: Host, kvm_cleanup: Cleanup) -> None:
    """iPXE ignores ACPI. The user asks for a 60 s ACPI wait in a request with a 10 s
    timeout: the wait gives way to the deadline, the guest is powered off, the worker is
    free at once and the next request (start) runs after it, not beside it."""
    name = kvm_cleanup.guest("kvmdl-" + uuid.uuid4().hex[:8])
    disk = kvm_cleanup.path(kvm_host.storage.create_disk(name, 1))
    guest = kvm_host.define(render_domain(name, 128, 1, [disk], IPXE, "127.0.0.1", "kvm"))
    guest.start()
    with daemon.db.session() as s:
        m = Machine(name=name, state="running", domain_uuid=guest.uuid)
        s.add(m)
        s.flush()
        mid = m.id
    sock = daemon.config.queue.socket
    t0 = time.monotonic()
    rid = queue.submit(daemon.db, sock, "shutdown", {"timeout": 60}, machine_id=mid, timeout=10)
    req = queue.wait_for(daemon.db, rid, 15)
    took = time.monotonic() - t0
    assert req.status == "done", req.error
    assert req.result == {"state": "shutdown", "forced": True}
    print(f"shutdown request took {took:.2f} s")
    assert took < 10, took
    time.sleep(0.2)
    assert daemon.busy == 0  # no worker left waiting for the ACPI event
    start = queue.submit(daemon.db, sock, "start", machine_id=mid)
    assert queue.wait_for(daemon.db, start, 20).status == "done"
    assert kvm_host.guest(name).state() == "running"
    kvm_host.guest(name).force_shutdown()


def test_managed_save_past_its_deadline_is_aborted(kvm_host: Host,
                                                   kvm_cleanup: Cleanup) -> None:
    """hibernate(timeout) aborts QEMU's save job at the deadline: the call returns at once
    with a clear error and the guest keeps running (then hibernates fine with time)."""
    from ravada.virt import VirtError

    name = kvm_cleanup.guest("kvmhb-" + uuid.uuid4().hex[:8])
    disk = kvm_cleanup.path(kvm_host.storage.create_disk(name, 1))
    guest = kvm_host.define(render_domain(name, 512, 1, [disk], IPXE, "127.0.0.1", "kvm"))
    guest.start()
    t0 = time.monotonic()
    with pytest.raises(VirtError, match="aborted, the machine keeps running"):
        guest.hibernate(timeout=0.001)
    assert time.monotonic() - t0 < 5
    assert guest.state() == "running" and not guest.has_managed_save()
    guest.hibernate(timeout=60)
    assert guest.state() == "hibernated"
