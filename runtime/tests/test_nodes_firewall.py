"""Each node's iptables are its own backend's: ``close_user`` on one node closes that node's
openings and queues the same for the other nodes (real iptables in a netns)."""

from __future__ import annotations

from pathlib import Path

import pytest
from netns import NetNS, netns_fixture  # noqa: F401 (fixture)
from sqlalchemy import select

from ravada import config as rconfig
from ravada.back.context import Context, Job
from ravada.back.handlers import HANDLERS
from ravada.db import Database, FirewallRule, Machine, Node, Request, User, utcnow
from ravada.firewall import Firewall

pytestmark = pytest.mark.netns


def test_close_user_closes_this_nodes_openings_and_fans_out(
        netns: NetNS, sqlite_db: Database, tmp_path: Path) -> None:
    config = rconfig.from_dict({"queue": {"socket": str(tmp_path / "queue.sock")}})
    fw_a = Firewall(command_prefix=netns.prefix, chain="RAVADA")
    fw_b = Firewall(command_prefix=netns.prefix, chain="RVDB")  # node B's own iptables
    with sqlite_db.session() as s:
        a, b = Node(name="a", heartbeat_at=utcnow()), Node(name="b", heartbeat_at=utcnow())
        s.add_all([a, b, User(id=1, name="ann", is_disabled=True)])
        s.flush()
        ids = (a.id, b.id)
        s.add_all([Machine(id=10, name="ann-on-a", owner_id=1, state="running", node_id=a.id),
                   Machine(id=11, name="ann-on-b", owner_id=1, state="running", node_id=b.id)])
        s.flush()
        s.add_all([FirewallRule(machine_id=10, client_ip="10.9.0.2", port=5900),
                   FirewallRule(machine_id=11, client_ip="10.9.0.3", port=5903)])
    fw_a.allow("ann-on-a", [5900], ["10.9.0.2"])
    fw_b.allow("ann-on-b", [5903], ["10.9.0.3"])
    ctx_a = Context(config=config, db=sqlite_db, host=None, firewall=fw_a)  # type: ignore[arg-type]
    ctx_a.node_id = ids[0]
    job = Job(id=1, command="close_user", args={"user_id": 1}, machine_id=None, user_id=None)

    assert HANDLERS["close_user"](ctx_a, job)["closed"] == ["ann-on-a"]
    assert fw_a.rules() == [] and [r.machine for r in fw_b.rules()] == ["ann-on-b"]
    with sqlite_db.sessionmaker() as s:
        assert [r.machine_id for r in s.scalars(select(FirewallRule))] == [11]
        fanned = s.scalars(select(Request).where(Request.command == "close_user")).all()
        assert [(r.node_id, r.args) for r in fanned] == [(ids[1], {"user_id": 1,
                                                                    "fanout": True})]
    ctx_b = Context(config=config, db=sqlite_db, host=None, firewall=fw_b)  # type: ignore[arg-type]
    ctx_b.node_id = ids[1]
    job_b = Job(id=2, command="close_user", args=fanned[0].args, machine_id=None, user_id=None)
    assert HANDLERS["close_user"](ctx_b, job_b)["closed"] == ["ann-on-b"]
    assert fw_b.rules() == []
    with sqlite_db.sessionmaker() as s:
        assert s.scalars(select(FirewallRule)).all() == []
        assert s.query(Request).count() == 1  # a fanned-out request does not fan out again
