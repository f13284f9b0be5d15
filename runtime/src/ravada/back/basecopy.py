"""Bases reach the other nodes: ``copy_base`` streams a base image between libvirts.

Why libvirt streams: the nodes already talk libvirt over TLS (``qemu+tls://``, certificates
from the CA that signs SPICE-TLS), so a copy needs no SSH keys, no rsync and no second
trust path. The destination backend opens the SOURCE node's ``libvirt_uri``, downloads the
base volume (``virStorageVol.download``) and uploads it into its own pool; the sha256 of
the bytes the source sent is compared with a second read of the written volume, so what
clones will use is what the source had. One request per node (``node_id`` set), with no
``machine_id``: a copy of minutes must not hold the base's clones on the source.
"""

from __future__ import annotations

import hashlib
import logging
import time
import xml.etree.ElementTree as ET
from typing import Any

import libvirt
from sqlalchemy import func, select, update

from ravada import queue
from ravada.back.context import Context, Job
from ravada.back.errors import RequestError
from ravada.db import BaseCopy, Machine, Node, utcnow

log = logging.getLogger(__name__)

CHUNK = 4 * 2**20


def base_volume_name(base: str) -> str:
    return f"{base}.base.qcow2"


def mark(ctx: Context, base_id: int, node_id: int, state: str, **values: Any) -> None:
    """Upsert the (base, node) row."""
    with ctx.db.session() as s:
        row = s.scalar(select(BaseCopy).where(BaseCopy.machine_id == base_id,
                                              BaseCopy.node_id == node_id))
        if row is None:
            row = BaseCopy(machine_id=base_id, node_id=node_id)
            s.add(row)
        row.state, row.updated_at = state, utcnow()
        for key, value in values.items():
            setattr(row, key, value)


def queue_copies(ctx: Context, base_id: int) -> list[int]:
    """After prepare_base: the base is ready here; one copy request per other enabled node."""
    if ctx.node_id is None:
        return []
    mark(ctx, base_id, ctx.node_id, "ready", error=None)
    ids = []
    with ctx.db.session() as s:
        others = s.scalars(select(Node.id).where(Node.id != ctx.node_id,
                                                 Node.enabled.is_(True))).all()
        for node_id in others:
            ids.append(queue.enqueue(s, "copy_base", {"base_id": base_id},
                                     node_id=node_id).id)
    for _ in ids:
        queue.notify(ctx.config.queue.socket)
    return ids


def queue_missing(ctx: Context) -> list[int]:
    """At start: copies of the bases this node does not hold yet (a node added later)."""
    if ctx.node_id is None:
        return []
    with ctx.db.session() as s:
        have = select(BaseCopy.machine_id).where(BaseCopy.node_id == ctx.node_id,
                                                 BaseCopy.state.in_(("ready", "copying")))
        bases = s.scalars(select(Machine.id).where(
            Machine.is_base.is_(True), Machine.node_id.is_not(None),
            Machine.node_id != ctx.node_id, Machine.id.not_in(have))).all()
        return [queue.enqueue(s, "copy_base", {"base_id": b}, node_id=ctx.node_id).id
                for b in bases]


def _source(ctx: Context, job: Job) -> tuple[Machine, Node]:
    base_id = job.args.get("base_id")
    if isinstance(base_id, bool) or not isinstance(base_id, int):
        raise RequestError(f"bad base_id {base_id!r}: an integer")
    with ctx.db.sessionmaker() as s:
        base = s.get(Machine, base_id)
        if base is None or not base.is_base:
            raise RequestError(f"machine {base_id} is not a base")
        if base.node_id is None or base.node_id == ctx.node_id:
            raise RequestError(f"base {base.name!r} is already on this node")
        node = s.get(Node, base.node_id)
        assert node is not None
        if not node.libvirt_uri:
            raise RequestError(f"node {node.name!r} has no libvirt_uri (node.libvirt_uri): "
                               "its bases cannot be copied")
        s.expunge_all()
    return base, node


def _open(uri: str) -> libvirt.virConnect:
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as err:
        raise RequestError(f"cannot reach the source libvirt {uri}: {err}") from None


def _source_volume(conn: libvirt.virConnect, base: Machine) -> libvirt.virStorageVol:
    """The base image the source's base domain uses (a flattened qcow2)."""
    try:
        dom = conn.lookupByName(base.name)
        path = ET.fromstring(dom.XMLDesc(0)).find("devices/disk[@device='disk']/source")
        vol = conn.storageVolLookupByPath(path.get("file") if path is not None else "")
    except libvirt.libvirtError as err:
        raise RequestError(f"base {base.name!r} not found on its node: {err}") from None
    if ET.fromstring(vol.XMLDesc(0)).findtext("backingStore/path"):
        raise RequestError(f"base image {vol.path()} has a backing file: only flattened "
                           "base images are copied")
    return vol


def _no_clones_here(ctx: Context, base: Machine) -> None:
    """A copy is replaced only while no clone of this node stands on it."""
    with ctx.db.sessionmaker() as s:
        clones = s.scalar(select(func.count()).select_from(Machine).where(
            Machine.base_id == base.id, Machine.node_id == ctx.node_id))
    if clones:
        raise RequestError(f"base {base.name!r} has {clones} clone(s) on this node: its copy "
                           "is not replaced")


def _pump(src: libvirt.virStream, dst: libvirt.virStream | None) -> tuple[str, int]:
    """Read a stream to its end (into ``dst`` when given); (sha256, bytes)."""
    digest, total = hashlib.sha256(), 0
    while True:
        data = src.recv(CHUNK)
        if isinstance(data, int) or not data:
            if data == -2:
                continue
            break
        digest.update(data)
        total += len(data)
        if dst is not None:
            view = memoryview(data)
            while view:
                sent = dst.send(view.tobytes())
                view = view[sent:]
    src.finish()
    if dst is not None:
        dst.finish()
    return digest.hexdigest(), total


def copy(ctx: Context, job: Job) -> dict[str, Any]:
    """The ``copy_base`` handler, on the destination node's backend."""
    base, source = _source(ctx, job)
    assert ctx.node_id is not None
    mark(ctx, base.id, ctx.node_id, "copying", error=None, sha256=None, bytes=0)
    started = time.monotonic()
    src_conn = _open(source.libvirt_uri)
    made: libvirt.virStorageVol | None = None
    try:
        src_vol = _source_volume(src_conn, base)
        capacity = src_vol.info()[1]
        name = base_volume_name(base.name)
        pool = ctx.storage.pool()
        _no_clones_here(ctx, base)
        for stale in ctx.storage.volumes_named(f"{base.name}.base"):  # a failed try's
            ctx.storage.delete(stale)
        xml = (f"<volume><name>{name}</name><capacity>{capacity}</capacity>"
               "<allocation>0</allocation><target><format type='qcow2'/>"
               "<permissions><mode>0444</mode></permissions></target></volume>")
        made = pool.createXML(xml, 0)
        down = src_conn.newStream(0)
        src_vol.download(down, 0, 0, 0)
        up = pool.connect().newStream(0)
        made.upload(up, 0, 0, 0)
        sha, size = _pump(down, up)
        check = pool.connect().newStream(0)
        made.download(check, 0, 0, 0)
        local_sha, local_size = _pump(check, None)
        if (local_sha, local_size) != (sha, size):
            raise RequestError(f"checksum mismatch: the source sent {size} bytes sha256 {sha}, "
                               f"this node holds {local_size} bytes sha256 {local_sha}")
    except BaseException as exc:
        if made is not None:
            ctx.storage.delete(made.path())
        error = str(exc) if isinstance(exc, RequestError) else f"{type(exc).__name__}: {exc}"
        mark(ctx, base.id, ctx.node_id, "failed", error=error)
        if isinstance(exc, libvirt.libvirtError):
            raise RequestError(f"copy of base {base.name!r} failed: {exc}") from None
        raise
    finally:
        src_conn.close()
    seconds = time.monotonic() - started
    mark(ctx, base.id, ctx.node_id, "ready", sha256=sha, bytes=size, seconds=seconds)
    mib_s = size / 2**20 / seconds if seconds else 0.0
    log.info("base %s copied from %s: %d bytes in %.1f s (%.1f MiB/s), sha256 %s",
             base.name, source.name, size, seconds, mib_s, sha)
    return {"sha256": sha, "bytes": size, "seconds": round(seconds, 3),
            "mib_per_s": round(mib_s, 1), "path": made.path()}


def forget_node_copies(ctx: Context, base_id: int) -> None:
    """A base stopped being one: its copies are no longer usable for placement."""
    with ctx.db.session() as s:
        s.execute(update(BaseCopy).where(BaseCopy.machine_id == base_id)
                  .values(state="failed", error="the base was removed"))
