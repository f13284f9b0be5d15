"""rvd_back's side of disabling a user: ``close_user`` against real iptables in a netns."""

from __future__ import annotations

from pathlib import Path

import pytest
from netns import NetNS, netns_fixture  # noqa: F401 (fixture)
from sqlalchemy import select

from ravada import config as rconfig
from ravada.back.context import Context, Job
from ravada.back.errors import RequestError
from ravada.back.handlers import HANDLERS, RETRYABLE
from ravada.db import ConsoleSession, Database, FirewallRule, Machine, User
from ravada.firewall import Firewall

pytestmark = pytest.mark.netns


def _job(user_id: object) -> Job:
    return Job(id=1, command="close_user", args={"user_id": user_id}, machine_id=None,
               user_id=None)


def test_close_user_closes_openings_and_consoles_of_a_disabled_user(
        netns: NetNS, sqlite_db: Database, tmp_path: Path) -> None:
    fw = Firewall(command_prefix=netns.prefix)
    config = rconfig.from_dict({"queue": {"socket": str(tmp_path / "queue.sock")}})
    ctx = Context(config=config, db=sqlite_db, host=None,  # type: ignore[arg-type]
                  firewall=fw)
    with sqlite_db.session() as s:
        s.add_all([User(id=1, name="ann", is_disabled=True), User(id=2, name="ben")])
        s.flush()
        s.add_all([Machine(id=10, name="desk-ann", owner_id=1, state="running"),
                   Machine(id=11, name="old-ann", owner_id=1, state="running"),
                   Machine(id=20, name="desk-ben", owner_id=2, state="running")])
        s.flush()
        s.add_all([FirewallRule(machine_id=10, client_ip="10.9.0.2", port=5900),
                   FirewallRule(machine_id=11, client_ip="10.9.0.3", port=5903),
                   FirewallRule(machine_id=20, client_ip="10.9.0.4", port=5910),
                   ConsoleSession(user_id=1, machine_id=10, client_ip="10.9.0.2"),
                   ConsoleSession(user_id=2, machine_id=20, client_ip="10.9.0.4")])
    fw.allow("desk-ann", [5900, 5901], ["10.9.0.2"])
    fw.allow("old-ann", [5903], ["10.9.0.3"])
    fw.allow("desk-ben", [5910], ["10.9.0.4"])

    result = HANDLERS["close_user"](ctx, _job(1))

    assert result == {"user_id": 1, "closed": ["desk-ann", "old-ann"], "consoles_ended": 1}
    assert {r.machine for r in fw.rules()} == {"desk-ben"}
    assert not any("ann" in line for line in netns.iptables_s("RAVADA"))
    with sqlite_db.sessionmaker() as s:
        assert [r.machine_id for r in s.scalars(select(FirewallRule))] == [20]
        ended = {c.user_id: c.ended_at for c in s.scalars(select(ConsoleSession))}
    assert ended[1] is not None and ended[2] is None
    assert "close_user" in RETRYABLE
    assert HANDLERS["close_user"](ctx, _job(1))["consoles_ended"] == 0  # idempotent
    # A user enabled again before the request ran keeps their access.
    assert HANDLERS["close_user"](ctx, _job(2)) == {"user_id": 2, "closed": [],
                                                    "consoles_ended": 0}
    assert {r.machine for r in fw.rules()} == {"desk-ben"}
    for bad in ("1", None, True, 999):
        with pytest.raises(RequestError):
            HANDLERS["close_user"](ctx, _job(bad))
