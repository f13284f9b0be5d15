"""Hypervisor nodes on libvirt's test:///default driver, SQLite and MariaDB.

Several rvd_back daemons run as threads of this process, each with its own node name,
queue socket and libvirt connection, on one database (test:///default's state is shared
inside a process, so each node's scope is what the database says is its own).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from test_back import POOL, Running, start_daemon, stop_daemon, wait_until

from ravada import config as rconfig
from ravada import placement, queue
from ravada.back import daemon as daemon_mod
from ravada.back.context import Context
from ravada.db import BaseCopy, Database, Machine, Node, Request, User, utcnow


def node_config(tmp_path: Path, db_url: str, name: str, **node: Any) -> rconfig.Config:
    home = tmp_path / name
    (home / "isos").mkdir(parents=True, exist_ok=True)
    return rconfig.from_dict({
        "database": {"url": db_url},
        "libvirt": {"uri": "test:///default", "storage_pool": POOL},
        "queue": {"socket": str(home / "queue.sock"), "fallback_poll": 0.1},
        "display": {"listen": "127.0.0.1"},
        "firewall": {"enabled": False},
        "front": {"secret_key_file": str(home / "front.key"), "iso_dir": str(home / "isos")},
        "node": {"name": name, "display_address": f"{name}.example.org",
                 "cluster_address": f"10.9.0.{len(name)}", **node},
    })


class Cluster:
    """Daemons by node name, on one database."""

    def __init__(self, tmp_path: Path, db: Database, db_url: str) -> None:
        self.tmp, self.db, self.url = tmp_path, db, db_url
        self.backs: dict[str, Running] = {}

    def start(self, name: str, **node: Any) -> Running:
        r = start_daemon(node_config(self.tmp, self.url, name, **node), self.db,
                         self.tmp / name)
        self.backs[name] = r
        return r

    def stop(self, name: str) -> None:
        stop_daemon(self.backs.pop(name))

    def node_id(self, name: str) -> int:
        with self.db.session() as s:
            node_id = s.scalar(select(Node.id).where(Node.name == name))
            assert node_id is not None
            return node_id

    def set_node(self, name: str, **values: Any) -> None:
        with self.db.session() as s:
            s.execute(update(Node).where(Node.name == name).values(**values))


@pytest.fixture
def cluster(tmp_path: Path, db: Database, db_url: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, db, db_url)
    yield c
    for name in list(c.backs):
        c.stop(name)


def users(db: Database, n: int) -> list[int]:
    with db.session() as s:
        rows = [User(name="u" + uuid.uuid4().hex[:8]) for _ in range(n)]
        s.add_all(rows)
        s.flush()
        return [u.id for u in rows]


def base_on(back: Running, copies_on: list[int] = ()) -> int:  # type: ignore[assignment]
    """A base prepared by ``back``'s node, with ready copies on the other nodes given."""
    name = "b" + uuid.uuid4().hex[:8]
    base = back.ok("create", {"name": name, "disk_gb": 1, "memory_mb": 256},
                   node_id=back.daemon.ctx.node_id)["machine_id"]
    copies = back.ok("prepare_base", machine_id=base).get("copies", [])
    for req_id in copies:  # the test driver has no volume streams: these fail
        req = queue.wait_for(back.db, req_id, 20)
        assert req.status == "failed" and "has no libvirt_uri" in req.error
    with back.db.session() as s:
        s.execute(delete(BaseCopy).where(BaseCopy.machine_id == base,
                                         BaseCopy.node_id.in_(copies_on)))
        s.add_all(BaseCopy(machine_id=base, node_id=n, state="ready") for n in copies_on)
    return base


def clone_nodes(back: Running, base: int, who: list[int]) -> list[tuple[int, Any]]:
    """Clone (and start) for each user; (node id, placement decision) of each request."""
    ids = [back.submit("clone", {"user_id": u, "start": True}, machine_id=base) for u in who]
    out = []
    for req_id in ids:
        req = queue.wait_for(back.db, req_id, 20)
        assert req.status == "done", req.error
        assert req.node_id is not None, req.args
        m = back.machine(req.result["machine_id"])
        assert m is not None and m.node_id == req.node_id and m.state == "running"
        out.append((req.node_id, req.args.get("placement")))
    return out


SOCKET = {"socket": "/tmp/ravada-test/queue.sock"}


def test_config_node_section_is_checked() -> None:
    cfg = rconfig.from_dict({"node": {"name": "n1", "heartbeat_timeout": 30}, "queue": SOCKET})
    assert cfg.node.name == "n1"
    for bad, key in (({"name": "a b"}, "node.name"), ({"heartbeat_timeout": 1},
                     "node.heartbeat_timeout"), ({"max_desktops": -1}, "node.max_desktops"),
                     ({"libvirt_uri": "qemu+ext:///system?command=/bin/sh"}, "node.libvirt_uri"),
                     ({"colour": "red"}, "node.colour")):
        with pytest.raises(rconfig.ConfigError, match=key.replace(".", r"\.")):
            rconfig.from_dict({"node": bad, "queue": SOCKET})


def _node(s: Any, name: str, **kw: Any) -> int:
    values: dict[str, Any] = {"heartbeat_at": utcnow(), "mem_free_mb": 1000,
                              "mem_total_mb": 4000, **kw}
    row = Node(name=name, **values)
    s.add(row)
    s.flush()
    return row.id


def test_choose_fewest_running_then_most_free_memory(db: Database) -> None:
    with db.session() as s:
        a = _node(s, "a", mem_free_mb=500)
        b = _node(s, "b", mem_free_mb=3000)
        c = _node(s, "c", mem_free_mb=9000)
        s.add(Machine(name="busy-c", state="running", node_id=c))
    with db.session() as s:
        node, why = placement.choose(s, None)
        assert node == b and why is not None and why["node"] == "b"
        assert "fewest running (0)" in why["reason"]
        s.add(Machine(name="busy-b", state="running", node_id=b))
        s.flush()
        assert placement.choose(s, None)[0] == a  # now a alone has none running
        s.execute(update(Node).where(Node.id == a).values(max_desktops=1))
        s.add(Machine(name="busy-a", state="paused", node_id=a))
        s.add(Machine(name="busy-a2", state="running", node_id=a))
        s.flush()
        cands = {c.name: c for c in placement.candidates(s, None)}
        assert cands["a"].why_not == "full (2/1 desktops)"
        assert placement.choose(s, None)[0] == c  # b and c run one each: c has more memory
        s.execute(update(Node).values(enabled=False))
        node, why = placement.choose(s, None)
        assert node is None and "a: disabled" in why["reason"]


def test_claim_takes_only_its_nodes_requests(db: Database) -> None:
    with db.session() as s:
        a, b = _node(s, "a"), _node(s, "b")
        for_b = queue.enqueue(s, "noop", node_id=b).id
        for_any = queue.enqueue(s, "noop").id
    assert queue.claim(db, "back-a", node_id=a) == for_any
    assert queue.claim(db, "back-a", node_id=a) is None  # b's request stays for b
    assert queue.claim(db, "back-b", node_id=b) == for_b


def test_clones_spread_over_nodes_and_requests_go_to_the_machines_node(
        cluster: Cluster, db: Database) -> None:
    n1, n2 = cluster.start("n1"), cluster.start("n2")
    id1, id2 = cluster.node_id("n1"), cluster.node_id("n2")
    base = base_on(n1, [id2])
    placed = clone_nodes(n1, base, users(db, 4))
    assert Counter(n for n, _ in placed) == {id1: 2, id2: 2}
    assert all(why and why["node"] in ("n1", "n2") and "fewest running" in why["reason"]
               for _, why in placed)
    with db.sessionmaker() as s:
        on_n2 = s.scalars(select(Machine).where(Machine.node_id == id2,
                                                Machine.base_id == base)).first()
        assert on_n2 is not None
        reqs = s.scalars(select(Request).where(Request.machine_id == on_n2.id,
                                               Request.command == "clone")).all()
        assert reqs == [] or all(r.worker == n2.daemon.name for r in reqs)
    # a request for the machine is run by its node's backend only
    req = queue.wait_for(db, n1.submit("force_shutdown", machine_id=on_n2.id), 20)
    assert (req.status, req.node_id, req.worker) == ("done", id2, n2.daemon.name)
    # the display of a machine on n2 names n2's display address
    with db.session() as s:
        uid = s.get(Machine, on_n2.id).owner_id
    res = n1.ok("clone", {"user_id": uid, "client_ip": "192.0.2.7"}, machine_id=base)
    assert res["display"]["host"] == "n2.example.org"


def test_a_request_for_a_node_is_never_run_by_another(cluster: Cluster, db: Database) -> None:
    n1 = cluster.start("n1")
    with db.session() as s:
        ghost = _node(s, "ghost")
    req_id = n1.submit("refresh", node_id=ghost)
    time.sleep(0.5)  # n1 wakes and claims what it may
    with db.sessionmaker() as s:
        assert s.get(Request, req_id).status == "requested"
    assert n1.ok("refresh") is not None  # n1 still serves requests for any node


def test_stale_heartbeat_and_drain_send_new_desktops_elsewhere(cluster: Cluster,
                                                               db: Database) -> None:
    n1, _n2 = cluster.start("n1"), cluster.start("n2")
    id1, id2 = cluster.node_id("n1"), cluster.node_id("n2")
    base = base_on(n1, [id2])
    cluster.stop("n2")  # its heartbeat stops
    cluster.set_node("n2", heartbeat_at=utcnow() - timedelta(seconds=31))
    placed = clone_nodes(n1, base, users(db, 3))
    assert {n for n, _ in placed} == {id1}
    cluster.start("n2")  # fresh heartbeat again
    cluster.set_node("n1", draining=True)
    placed = clone_nodes(n1, base, users(db, 2))
    assert {n for n, _ in placed} == {id2}
    with db.session() as s:
        cands = {c.name: c.why_not for c in placement.candidates(s, s.get(Machine, base))}
    assert cands == {"n1": "draining", "n2": ""}


def test_a_node_without_the_base_is_not_chosen(cluster: Cluster, db: Database) -> None:
    n1, _n2 = cluster.start("n1"), cluster.start("n2")
    id1 = cluster.node_id("n1")
    base = base_on(n1)  # no copy on n2
    placed = clone_nodes(n1, base, users(db, 3))
    assert {n for n, _ in placed} == {id1}
    with db.session() as s:
        cands = {c.name: c.why_not for c in placement.candidates(s, s.get(Machine, base))}
    assert cands["n2"] == "the base is not copied there yet"


def test_restart_reconciles_only_its_own_machines(cluster: Cluster, db: Database) -> None:
    n1, _n2 = cluster.start("n1"), cluster.start("n2")
    id1, id2 = cluster.node_id("n1"), cluster.node_id("n2")
    base = base_on(n1, [id2])
    placed = clone_nodes(n1, base, users(db, 2))
    assert {n for n, _ in placed} == {id1, id2}
    cluster.stop("n1")
    with db.session() as s:
        mine = s.scalar(select(Machine).where(Machine.node_id == id1, Machine.base_id == base))
        mine.state = "unknown"  # what the front showed while n1 was down
        # a machine of n2 whose domain this libvirt does not have: not n1's business
        s.add(Machine(name="only-on-n2-" + uuid.uuid4().hex[:6], state="running",
                      node_id=id2))
        mine_id = mine.id
    cluster.start("n1")
    with db.sessionmaker() as s:
        assert s.get(Machine, mine_id).state == "running"
        other = s.scalar(select(Machine).where(Machine.name.like("only-on-n2-%")))
        assert other.state == "running"


def test_context_public_host_is_the_nodes_display_address(tmp_path: Path) -> None:
    cfg = rconfig.from_dict({"node": {"display_address": "203.0.113.9"},
                             "display": {"public_host": "broker.example.org"},
                             "queue": SOCKET})
    ctx = Context(cfg, None, None, None)  # type: ignore[arg-type]
    assert ctx.public_host == "203.0.113.9"


def test_a_down_nodes_machines_show_unknown_until_it_is_back(
        cluster: Cluster, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(daemon_mod, "RECOVER_EVERY", 0.2)
    n1, _n2 = cluster.start("n1"), cluster.start("n2")
    id2 = cluster.node_id("n2")
    base = base_on(n1, [id2])
    placed = clone_nodes(n1, base, users(db, 2))
    assert {n for n, _ in placed} == {cluster.node_id("n1"), id2}

    def states() -> dict[int | None, str]:
        with db.sessionmaker() as s:
            return {m.node_id: m.state for m in s.scalars(
                select(Machine).where(Machine.base_id == base))}

    cluster.stop("n2")
    cluster.set_node("n2", heartbeat_at=utcnow() - timedelta(seconds=31))
    wait_until(lambda: states()[id2] == "unknown")  # n1 marks them: n2 cannot say
    assert states()[cluster.node_id("n1")] == "running"
    cluster.start("n2")  # back: its refresh reads libvirt
    assert states()[id2] == "running"


def test_many_backends_claim_clones_of_one_base_without_deadlock_errors(db: Database) -> None:
    """Eight claimers take 400 clones of one base while each "handler" inserts its clone row
    (a foreign-key lock on the base): no claim fails (MariaDB deadlocks are retried, clones
    take the base row in share mode) and no request is claimed twice."""
    with db.session() as s:
        base = Machine(name="b" + uuid.uuid4().hex[:6], is_base=True, state="shutdown")
        s.add(base)
        s.flush()
        base_id = base.id
        for i in range(400):
            queue.enqueue(s, "clone", {"user_id": i}, machine_id=base_id)
    errors: list[str] = []
    claimed: list[int] = []

    def claimer(k: int) -> None:
        while True:
            try:
                req_id = queue.claim(db, f"w{k}")
            except Exception as exc:
                errors.append(str(exc)[:100])
                continue
            if req_id is None:
                return
            claimed.append(req_id)
            with db.session() as s:
                s.add(Machine(name=f"c{req_id}-{base_id}", base_id=base_id, state="creating"))
                s.flush()
                s.execute(update(Request).where(Request.id == req_id).values(result={}))
            queue.finish(db, req_id, result={})

    threads = [threading.Thread(target=claimer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len(claimed) == len(set(claimed)) == 400


def test_a_node_back_from_a_stall_refreshes_its_machines(cluster: Cluster, db: Database) -> None:
    n1 = cluster.start("n1")
    base = base_on(n1)
    (node, _), = clone_nodes(n1, base, users(db, 1))
    with db.session() as s:  # what another backend wrote while n1 beat no more
        s.execute(update(Machine).where(Machine.base_id == base).values(state="unknown"))
    n1.daemon._last_beat -= 31  # the stall, as the heartbeat sees it
    n1.daemon._heartbeat()
    with db.sessionmaker() as s:
        assert s.scalar(select(Machine.state).where(Machine.base_id == base)) == "running"


def test_deadlines_and_pool_refills_are_each_nodes_own(db: Database, tmp_path: Path) -> None:
    """A node fires the deadlines of its own machines and keeps the pools of its own bases:
    two nodes never queue the same shutdown, nor refill one pool twice."""
    from ravada.back.pool import PoolKeeper
    from ravada.back.timers import Timers

    with db.session() as s:
        a, b = _node(s, "a"), _node(s, "b")
        past = utcnow() - timedelta(seconds=5)
        s.add(Machine(name="late-on-b", state="running", node_id=b, run_until=past))
        s.add(Machine(name="pool-base-a", is_base=True, state="shutdown", node_id=a,
                      pool_size=2))
    cfg = rconfig.from_dict({"queue": {"socket": str(tmp_path / "q.sock")}})
    ctx_a = Context(cfg, db, None, None)  # type: ignore[arg-type]
    ctx_b = Context(cfg, db, None, None)  # type: ignore[arg-type]
    ctx_a.node_id, ctx_b.node_id = a, b
    assert PoolKeeper(ctx_b, 4, quiet=0).tick() == []
    assert len(PoolKeeper(ctx_a, 4, quiet=0).tick()) == 2
    assert Timers(ctx_a).fire() == [] and Timers(ctx_a).next_deadline() is None
    fired = Timers(ctx_b).fire()
    assert len(fired) == 1
    with db.sessionmaker() as s:
        assert s.get(Request, fired[0]).node_id == b
