"""A base copied between two libvirt storage pools with volume streams (real libvirtd).

The "source node" is qemu:///system with the test pool ``ravada-test``; the destination is
a second dir pool on the same libvirtd, reached through the source's ``libvirt_uri``
(qemu:///system here; qemu+tls:// between hosts). Run under ``flock /tmp/kvm.lock``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from kvm import URI, Cleanup

from ravada import config as rconfig
from ravada.back import basecopy
from ravada.back.context import Context, Job, make_firewall
from ravada.back.errors import RequestError
from ravada.db import BaseCopy, Database, Machine, Node, utcnow
from ravada.virt import Host, render_domain

pytestmark = pytest.mark.kvm
COPY_POOL = "ravada-test-copy"
DATA_MIB = int(os.environ.get("RAVADA_BASECOPY_MIB", "256"))


@pytest.fixture
def copy_pool(kvm_host: Host) -> Iterator[Host]:
    """A second dir pool on the same libvirtd: the destination node's pool."""
    conn = kvm_host.conn()
    with_dir = Path(tempfile.mkdtemp(prefix="ravada-copy-", dir="/var/lib/libvirt/images"))
    os.chmod(with_dir, 0o711)
    try:
        old = conn.storagePoolLookupByName(COPY_POOL)
        if old.isActive():
            old.destroy()
        old.undefine()
    except libvirt.libvirtError:
        pass
    pool = conn.storagePoolDefineXML(f"<pool type='dir'><name>{COPY_POOL}</name><target>"
                                     f"<path>{with_dir}</path></target></pool>", 0)
    pool.create(0)
    host = Host(URI, COPY_POOL)
    yield host
    host.close()
    for vol in pool.listAllVolumes(0):
        vol.delete(0)
    pool.destroy()
    pool.undefine()
    shutil.rmtree(with_dir, ignore_errors=True)


def _base_image(kvm_host: Host, cleanup: Cleanup, name: str) -> str:
    """A flattened qcow2 holding DATA_MIB of random data, in the source pool."""
    target = kvm_host.storage.pool().XMLDesc(0).split("<path>")[1].split("</path>")[0]
    path = cleanup.path(os.path.join(target, basecopy.base_volume_name(name)))
    with tempfile.NamedTemporaryFile(dir="/var/tmp") as raw:
        for _ in range(DATA_MIB):
            raw.write(os.urandom(2**20))
        raw.flush()
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", raw.name, path], check=True)
    os.chmod(path, 0o444)
    kvm_host.storage.pool().refresh(0)
    return path


def test_copy_base_streams_the_volume_and_checks_it(kvm_host: Host, kvm_cleanup: Cleanup,
                                                    copy_pool: Host, sqlite_db: Database,
                                                    tmp_path: Path) -> None:
    name = "kvmb-" + uuid.uuid4().hex[:8]
    source_path = _base_image(kvm_host, kvm_cleanup, name)
    kvm_host.define(render_domain(kvm_cleanup.guest(name), 128, 1, [source_path], None,
                                  "127.0.0.1", kvm_host.domain_type))
    with sqlite_db.session() as s:
        src = Node(name="src", libvirt_uri=URI, heartbeat_at=utcnow())
        dst = Node(name="dst", heartbeat_at=utcnow())
        s.add_all([src, dst])
        s.flush()
        base = Machine(name=name, is_base=True, state="shutdown", node_id=src.id)
        s.add(base)
        s.flush()
        ids = (src.id, dst.id, base.id)
    cfg = rconfig.from_dict({"libvirt": {"uri": URI, "storage_pool": COPY_POOL},
                             "queue": {"socket": str(tmp_path / "q.sock")},
                             "firewall": {"enabled": False}})
    ctx = Context(cfg, sqlite_db, copy_pool, make_firewall(cfg), tmp_path)
    ctx.node_id = ids[1]
    job = Job(1, "copy_base", {"base_id": ids[2]}, None, None)

    started = time.monotonic()
    res = basecopy.copy(ctx, job)
    took = time.monotonic() - started
    with open(source_path, "rb") as f:
        want = hashlib.file_digest(f, "sha256").hexdigest()
    assert res["sha256"] == want and res["bytes"] == os.path.getsize(source_path)
    with open(res["path"], "rb") as f:
        assert hashlib.file_digest(f, "sha256").hexdigest() == want
    assert res["path"] != source_path and res["path"].endswith(f"/{name}.base.qcow2")
    with sqlite_db.sessionmaker() as s:
        row = s.query(BaseCopy).one()
        assert (row.node_id, row.state, row.sha256, row.bytes) == (ids[1], "ready", want,
                                                                   res["bytes"])
    mib_s = res["bytes"] / 2**20 / took
    print(f"\nbase copy: {res['bytes'] / 2**20:.0f} MiB in {took:.2f} s = {mib_s:.1f} MiB/s "
          "(download + upload + checksum read-back)")
    Path("/tmp/ravada-basecopy-speed.txt").write_text(
        f"{res['bytes']} bytes {took:.3f} s {mib_s:.1f} MiB/s\n")

    # again: the stale copy is replaced; a source without the base fails cleanly
    assert basecopy.copy(ctx, job)["sha256"] == want
    # a clone on the destination stands on the copy
    overlay = copy_pool.storage.create_overlay("kvmc-" + uuid.uuid4().hex[:6], res["path"])
    assert copy_pool.storage.exists(overlay)
    with sqlite_db.session() as s:
        s.get(Machine, ids[2]).name = "kvmb-missing"
    with pytest.raises(RequestError, match="not found on its node"):
        basecopy.copy(ctx, job)
    with sqlite_db.sessionmaker() as s:
        assert s.query(BaseCopy).one().state == "failed"
