"""Fixtures for tests against a REAL libvirtd + QEMU/KVM on this machine.

The fixtures are imported ONCE, by conftest.py; test modules must not import them again: a
fixture imported into a module is a second definition, so a session fixture would be set up
twice (the second one found libvirtd already started by the first and the libvirtd restart
test skipped in every full run).
``kvm_host`` (session) needs root, ``/dev/kvm`` and Debian's libvirt-daemon-system; without
them it skips with the reason. With no systemd, it starts ``virtlogd -d`` and ``libvirtd -d``
itself when ``/run/libvirt/libvirt-sock`` is absent (and stops them at the end), gives
``/dev/kvm`` group kvm mode 0660 (QEMU runs as libvirt-qemu), defines and starts a dir pool
``ravada-test`` in a temporary directory under /var/lib/libvirt/images, and yields a
:class:`Host` on qemu:///system.
``kvm_cleanup`` (function) collects domain names and volume paths a test makes and removes
them afterwards, also when the test failed.
"""

from __future__ import annotations

import grp
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from strict import strict, unavailable

from ravada.virt import GuestNotFound, Host, VirtError

URI = "qemu:///system"
POOL = "ravada-test"
SOCKET = Path("/run/libvirt/libvirt-sock")


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "KVM tests need root"
    if not os.path.exists("/dev/kvm"):
        return "no /dev/kvm on this machine"
    for tool in ("libvirtd", "virtlogd", "qemu-img"):
        if not shutil.which(tool):
            return f"{tool} is not installed (apt-get install libvirt-daemon-system qemu-utils)"
    return None


def _pid(path: str) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


DAEMONS = (("virtlogd", "/run/virtlogd.pid"), ("libvirtd", "/run/libvirtd.pid"))


def start_daemon(daemon: str, pidfile: str) -> int:
    """Start ``daemon -d`` and wait for its pid file (and for libvirtd, its socket)."""
    subprocess.run([daemon, "-d"], check=True, capture_output=True, timeout=30)
    deadline = time.monotonic() + 30
    while not ((pid := _pid(pidfile)) and _alive(pid)) \
            or (daemon == "libvirtd" and not SOCKET.exists()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{daemon} did not start")
        time.sleep(0.05)
    return pid


def _start_daemons() -> list[str]:
    """Start virtlogd and libvirtd when no libvirtd listens; return those we started."""
    if SOCKET.exists():
        try:
            libvirt.open(URI).close()
            return []
        except libvirt.libvirtError:
            pass  # a stale socket: start our own
    started = []
    for daemon, pidfile in DAEMONS:
        pid = _pid(pidfile)
        if pid and _alive(pid):
            continue
        start_daemon(daemon, pidfile)
        started.append(daemon)
    return started


def stop_daemon(daemon: str) -> None:
    """SIGTERM the daemon we started (by the pid in its pid file) and wait for it to end."""
    pid = _pid(dict(DAEMONS)[daemon])
    if not pid:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def restart_libvirtd(host: Host) -> None:
    """Restart libvirtd under a live ``host``: the daemon the tests started, or the systemd
    unit; a libvirtd someone else started by hand is not ours to restart."""
    if "libvirtd" in getattr(host, "started_daemons", []):
        stop_daemon("libvirtd")
        start_daemon("libvirtd", "/run/libvirtd.pid")
        return
    if shutil.which("systemctl") and subprocess.run(
            ["systemctl", "is-active", "--quiet", "libvirtd.service"]).returncode == 0:
        subprocess.run(["systemctl", "restart", "libvirtd.service"], check=True, timeout=60)
        return
    if strict() and _pid(dict(DAEMONS)["libvirtd"]):
        # CI (strict): the test must run; a libvirtd left by an earlier run is restarted
        # the same way (its pid file), KVM tests run one at a time anyway.
        stop_daemon("libvirtd")
        start_daemon("libvirtd", "/run/libvirtd.pid")
        return
    unavailable("libvirtd runs, but neither the tests nor systemd started it: "
                "not restarting someone else's")


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie no one reaps counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kvm_device() -> None:
    os.chown("/dev/kvm", -1, grp.getgrnam("kvm").gr_gid)
    os.chmod("/dev/kvm", 0o660)


def _define_pool(conn: libvirt.virConnect, path: Path) -> None:
    try:
        old = conn.storagePoolLookupByName(POOL)
        if old.isActive():
            old.destroy()
        old.undefine()
    except libvirt.libvirtError:
        pass
    pool = conn.storagePoolDefineXML(
        f"<pool type='dir'><name>{POOL}</name><target><path>{path}</path>"
        "<permissions><mode>0711</mode></permissions></target></pool>", 0)
    pool.build(0)
    pool.create(0)


_set_ups = 0  # kvm_host instances this session (more than one: a duplicate definition)


@pytest.fixture(scope="session")
def kvm_host() -> Iterator[Host]:
    """A Host on qemu:///system with pool ``ravada-test`` (skips where KVM can't run)."""
    global _set_ups
    _set_ups += 1
    if _set_ups > 1:
        pytest.fail("kvm_host was set up twice in one session: a test module imports it "
                    "(`from kvm import kvm_host`); only conftest.py may", pytrace=False)
    reason = _why_not()
    if reason:
        print(f"skipping KVM tests: {reason}")
        unavailable(reason)
    started = _start_daemons()
    _kvm_device()
    # not under pytest's tmp: pytest keeps /tmp/pytest-of-root at 0700, and QEMU runs as
    # libvirt-qemu; libvirt's own images dir is traversable
    images = Path("/var/lib/libvirt/images")
    images.mkdir(parents=True, exist_ok=True)
    pool_dir = Path(tempfile.mkdtemp(prefix="ravada-test-", dir=images))
    os.chmod(pool_dir, 0o711)
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors are raised anyway
    conn = libvirt.open(URI)
    _define_pool(conn, pool_dir)
    conn.close()
    host = Host(URI, POOL)
    host.started_daemons = started  # type: ignore[attr-defined]
    yield host
    host.close()
    conn = libvirt.open(URI)  # a new one: a test may have restarted libvirtd
    try:
        pool = conn.storagePoolLookupByName(POOL)
        for vol in pool.listAllVolumes(0):
            vol.delete(0)
        pool.destroy()
        pool.undefine()
    except libvirt.libvirtError as err:
        print(f"pool cleanup: {err}")
    conn.close()
    shutil.rmtree(pool_dir, ignore_errors=True)
    for daemon in reversed(started):
        stop_daemon(daemon)


class Cleanup:
    """Names and paths a test made; removed at teardown whatever happened."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.names: list[str] = []
        self.paths: list[str] = []

    def guest(self, name: str) -> str:
        self.names.append(name)
        return name

    def path(self, path: str) -> str:
        self.paths.append(path)
        return path

    def run(self) -> None:
        for name in self.names:
            try:
                self.host.guest(name).remove(self.host.storage)
            except GuestNotFound:
                pass
            except VirtError as err:
                print(f"cleanup of {name}: {err}")
        for path in reversed(self.paths):
            try:
                self.host.storage.delete(path)
            except VirtError as err:
                print(f"cleanup of {path}: {err}")


@pytest.fixture
def kvm_cleanup(kvm_host: Host) -> Iterator[Cleanup]:
    c = Cleanup(kvm_host)
    yield c
    c.run()
