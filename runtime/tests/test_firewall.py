"""The display firewall against real iptables (nft backend) in private network namespaces."""

from __future__ import annotations

import statistics
import time

import pytest
from netns import (  # noqa: F401 (fixtures)
    NetNS,
    can_connect,
    client_netns_fixture,
    netns_fixture,
    veth_link,
)
from strict import unavailable

from ravada.firewall import Firewall, FirewallError, Rule

CHAIN = "RAVADA"
X, Y = "10.99.0.2", "10.99.0.3"


def make_fw(ns: NetNS, **kw: object) -> Firewall:
    return Firewall(command_prefix=ns.prefix, **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["iptables", "iptables-legacy"])
def ipt(request: pytest.FixtureRequest, netns: NetNS) -> str:
    """The iptables flavour under test: Debian's default (nft) and the legacy one."""
    binary = request.param
    try:
        netns.run(binary, "-w", "-S")
    except (RuntimeError, FileNotFoundError) as exc:
        unavailable(f"{binary} unusable here: {exc}")
    return binary


def chain_rules(ns: NetNS, binary: str = "iptables") -> list[str]:
    return [ln for ln in ns.iptables_s(CHAIN, binary) if ln.startswith("-A ")]


def hooks(ns: NetNS, binary: str = "iptables") -> list[int]:
    """Positions (1-based) of the hook among INPUT's rules."""
    rules = [ln for ln in ns.iptables_s("INPUT", binary) if ln.startswith("-A INPUT")]
    return [i + 1 for i, ln in enumerate(rules) if ln == f"-A INPUT -j {CHAIN}"]


# -- validation (no root needed: checked before anything runs) ---------------------------

@pytest.mark.parametrize("ip", ["", "10.0.0", "10.0.0.1; rm -rf /", "10.0.0.1 -j DROP",
                                "0.0.0.0", "::", "224.0.0.1", "10.0.0.0/24", "host.example"])
def test_open_rejects_bad_ip(ip: str) -> None:
    fw = Firewall(enabled=False)
    with pytest.raises(ValueError, match="client IP"):
        fw.allow("m1", [5900], [ip])


@pytest.mark.parametrize("ports", [[], [5899], [7001], [0], ["5900"], [True], [5900.0]])
def test_open_rejects_bad_ports(ports: list) -> None:
    with pytest.raises(ValueError, match="port"):
        Firewall(enabled=False).allow("m1", ports, ["10.0.0.2"])


@pytest.mark.parametrize("name", ["", "a b", 'x"y', "m1\n-A INPUT -j ACCEPT", "-m", "a" * 65,
                                  "ma/ch", "été"])
def test_rejects_unsafe_machine_names(name: str) -> None:
    fw = Firewall(enabled=False)
    with pytest.raises(ValueError, match="machine name"):
        fw.allow(name, [5900], ["10.0.0.2"])
    with pytest.raises(ValueError, match="machine name"):
        fw.close(name)
    with pytest.raises(ValueError, match="machine name"):
        fw.reconcile([Rule(name, 5900, "10.0.0.2")])


def test_rejects_bad_chain_and_range() -> None:
    with pytest.raises(ValueError, match="chain"):
        Firewall(chain="RA VADA")
    with pytest.raises(ValueError, match="chain"):
        Firewall(chain="INPUT")
    with pytest.raises(ValueError, match="port_min"):
        Firewall(port_min=7000, port_max=5900)


def test_ipv4_mapped_client_is_ipv4() -> None:
    from ravada.firewall import check_ip
    assert str(check_ip("::ffff:10.0.0.2")) == "10.0.0.2"


# -- real iptables in a namespace ---------------------------------------------------------

@pytest.mark.netns
def test_allow_adds_commented_rules_for_every_viewer(netns: NetNS, ipt: str) -> None:
    fw = make_fw(netns, iptables=ipt)
    fw.allow("m1", [5900, 5901], [X])
    assert chain_rules(netns, ipt) == [
        f'-A {CHAIN} -s {X}/32 -p tcp -m tcp --dport {p} -m comment --comment "ravada:m1" '
        "-j ACCEPT" for p in (5900, 5901)]
    assert sorted(fw.rules(), key=lambda r: r.port) == [Rule("m1", 5900, X), Rule("m1", 5901, X)]
    assert hooks(netns, ipt) == [1]

    fw.allow("m1", [5900, 5901], [X, Y])  # a second viewer: X keeps its opening
    assert set(fw.rules()) == {Rule("m1", p, ip) for p in (5900, 5901) for ip in (X, Y)}
    fw.allow("m1", [5900, 5901], [Y])  # X evicted (the backend's cap): only Y stays
    assert sorted(fw.rules(), key=lambda r: r.port) == [Rule("m1", 5900, Y), Rule("m1", 5901, Y)]
    assert not any(X in ln for ln in chain_rules(netns, ipt))


@pytest.mark.netns
def test_allow_keeps_other_ports_and_machines(netns: NetNS) -> None:
    fw = make_fw(netns)
    fw.allow("m1", [5900], [X])
    fw.allow("m2", [5902], [X])
    fw.allow("m2", [5902], [Y])
    assert set(fw.rules()) == {Rule("m1", 5900, X), Rule("m2", 5902, Y)}
    fw.allow("m2", [5902], [])  # no viewers left: closed
    assert set(fw.rules()) == {Rule("m1", 5900, X)}


@pytest.mark.netns
def test_close_removes_only_that_machine(netns: NetNS, ipt: str) -> None:
    fw = make_fw(netns, iptables=ipt)
    fw.allow("m1", [5900, 5901], [X])
    fw.allow("m10", [5902], [X])
    fw.allow("m2", [5903], [Y])
    netns.run(ipt, "-A", CHAIN, "-s", "192.0.2.1", "-j", "RETURN")  # not ours
    fw.close("m1")
    assert set(fw.rules()) == {Rule("m10", 5902, X), Rule("m2", 5903, Y)}
    # the chain is rvd_back's: a hand-made rule goes with the next change
    assert len(chain_rules(netns, ipt)) == 2
    fw.close("m1")  # idempotent
    fw.close("never-opened")
    assert len(fw.rules()) == 2


@pytest.mark.netns
def test_reconcile_after_restart(netns: NetNS, ipt: str) -> None:
    old = make_fw(netns, iptables=ipt)
    old.allow("gone", [5900], [X])   # machine stopped while the daemon was down
    old.allow("m1", [5901], [X])     # viewer changed: desired says Y
    old.allow("m2", [5902], [Y])     # still right
    netns.run(ipt, "-A", CHAIN, "-p", "tcp", "--dport", "5999", "-j", "ACCEPT")  # foreign
    netns.run(ipt, "-A", CHAIN, "-s", X, "-p", "tcp", "--dport", "5902", "-m", "comment",
              "--comment", "ravada:m2", "-j", "ACCEPT")  # hand-made duplicate-ish rule

    desired = [Rule("m1", 5901, Y), Rule("m2", 5902, Y), Rule("m3", 5903, X),
               Rule("m3", 5903, X)]  # a duplicate in the input is kept once
    new = make_fw(netns, iptables=ipt)  # "restart": a fresh object
    new.reconcile(desired)
    assert new.rules() == [Rule("m1", 5901, Y), Rule("m2", 5902, Y), Rule("m3", 5903, X)]
    assert len(chain_rules(netns, ipt)) == 3
    assert hooks(netns, ipt) == [1]

    before, restores = chain_rules(netns, ipt), new.restores
    new.reconcile(desired)  # already right: nothing written
    assert chain_rules(netns, ipt) == before and new.restores == restores
    new.reconcile([])
    assert chain_rules(netns, ipt) == []


@pytest.mark.netns
def test_no_duplicates_after_many_calls(netns: NetNS, ipt: str) -> None:
    fw = make_fw(netns, iptables=ipt)
    for _ in range(100):
        fw.allow("m1", [5900, 5901], [X, X])
    assert len(chain_rules(netns, ipt)) == 2
    for _ in range(20):
        fw.ensure_chain()
        make_fw(netns, iptables=ipt).ensure_chain()
    assert hooks(netns, ipt) == [1]
    assert netns.iptables_s(binary=ipt).count(f"-N {CHAIN}") == 1
    assert len(chain_rules(netns, ipt)) == 2  # ensure_chain never flushes


@pytest.mark.netns
def test_hook_is_moved_to_top_and_duplicates_removed(netns: NetNS, ipt: str) -> None:
    netns.run(ipt, "-N", CHAIN)
    netns.run(ipt, "-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
    netns.run(ipt, "-A", "INPUT", "-j", CHAIN)
    netns.run(ipt, "-A", "INPUT", "-p", "tcp", "--dport", "5900:7000", "-j", "DROP")
    netns.run(ipt, "-A", "INPUT", "-j", CHAIN)
    make_fw(netns, iptables=ipt).ensure_chain()
    assert netns.iptables_s("INPUT", ipt)[1:] == [
        f"-A INPUT -j {CHAIN}", "-A INPUT -i lo -j ACCEPT",
        "-A INPUT -p tcp -m tcp --dport 5900:7000 -j DROP"]


@pytest.mark.netns
def test_disabled_changes_nothing(netns: NetNS) -> None:
    before = netns.iptables_s()
    fw = make_fw(netns, enabled=False)
    fw.ensure_chain()
    fw.allow("m1", [5900], [X])
    fw.reconcile([Rule("m1", 5900, X)])
    fw.close("m1")
    assert fw.rules() == []
    assert netns.iptables_s() == before
    assert f"-N {CHAIN}" not in before


@pytest.mark.netns
def test_ipv6_viewer_keeps_the_ipv4_opening(netns: NetNS) -> None:
    fw = make_fw(netns)
    v6 = "2001:db8::2"
    fw.allow("m1", [5900], [X])
    fw.allow("m1", [5900], [X, "2001:DB8:0::2"])  # the same user, now over IPv6: normalized
    assert set(fw.rules()) == {Rule("m1", 5900, X), Rule("m1", 5900, v6)}
    assert chain_rules(netns) == [
        f'-A {CHAIN} -s {X}/32 -p tcp -m tcp --dport 5900 -m comment --comment "ravada:m1" '
        "-j ACCEPT"]
    assert chain_rules(netns, "ip6tables") == [
        f'-A {CHAIN} -s {v6}/128 -p tcp -m tcp --dport 5900 -m comment --comment "ravada:m1" '
        "-j ACCEPT"]
    assert hooks(netns, "ip6tables") == [1]
    fw.allow("m1", [5900], [v6, X])  # and back to IPv4: the IPv6 opening stays
    assert set(fw.rules()) == {Rule("m1", 5900, X), Rule("m1", 5900, v6)}
    fw.reconcile([Rule("m1", 5900, X), Rule("m2", 5901, "2001:db8::3")])
    assert set(fw.rules()) == {Rule("m1", 5900, X), Rule("m2", 5901, "2001:db8::3")}
    fw.close("m2")
    assert chain_rules(netns, "ip6tables") == []


@pytest.mark.netns
def test_error_carries_iptables_stderr(netns: NetNS) -> None:
    fw = make_fw(netns, chain="ACCEPT")  # iptables refuses a chain named like a target
    with pytest.raises(FirewallError) as err:
        fw.ensure_chain()
    assert "clash with target name" in err.value.stderr
    assert "clash with target name" in str(err.value)
    assert netns.iptables_s("INPUT") == ["-P INPUT ACCEPT"]  # nothing half-made


@pytest.mark.netns
def test_recovers_when_the_chain_was_deleted(netns: NetNS) -> None:
    fw = make_fw(netns)
    fw.allow("m1", [5900], [X])
    netns.run("iptables", "-D", "INPUT", "-j", CHAIN)  # e.g. an admin's `iptables -F; -X`
    netns.run("iptables", "-F", CHAIN)
    netns.run("iptables", "-X", CHAIN)
    fw.allow("m1", [5900], [Y])
    assert fw.rules() == [Rule("m1", 5900, Y)]
    assert hooks(netns) == [1]


@pytest.mark.netns
def test_a_click_repairs_a_flushed_chain_and_a_lost_hook(netns: NetNS) -> None:
    fw = make_fw(netns)
    fw.allow("m1", [5900], [X])
    fw.allow("m2", [5901], [Y])
    netns.run("iptables", "-F", CHAIN)  # every opening gone behind our back
    fw.allow("m1", [5900], [X])  # the next click writes the whole chain again
    assert set(fw.rules()) == {Rule("m1", 5900, X), Rule("m2", 5901, Y)}
    netns.run("iptables", "-D", "INPUT", "-j", CHAIN)
    netns.run("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "5900:7000", "-j", "DROP")
    fw.allow("m1", [5900], [X, Y])
    assert hooks(netns) == [1]
    assert len(fw.rules()) == 3


def counting_prefix(ns: NetNS, log: str) -> tuple[str, ...]:
    """A command prefix that appends each command line to ``log``, then runs it in ``ns``."""
    return ("sh", "-c", f'echo "$*" >> {log}; exec "$@"', "sh", *ns.prefix)


@pytest.mark.netns
def test_one_restore_process_per_click(netns: NetNS, tmp_path) -> None:
    log = tmp_path / "commands"
    fw = Firewall(command_prefix=counting_prefix(netns, str(log)))
    fw.ensure_chain()
    for i in range(5):
        fw.allow(f"other{i}", [6000 + i], [Y])
    fw.allow("m1", [5900, 5901], ["2001:db8::7"])
    log.write_text("")
    fw.allow("m1", [5900, 5901], ["2001:db8::7", X])  # a new IPv4 viewer
    assert log.read_text().splitlines() == [
        f"ip netns exec {netns.name} iptables-restore -w --noflush"]
    log.write_text("")
    fw.allow("m1", [5900, 5901], [X, "2001:db8::9"])  # a new IPv6 viewer, one evicted
    assert log.read_text().splitlines() == [
        f"ip netns exec {netns.name} ip6tables-restore -w --noflush"]
    log.write_text("")
    fw.allow("m1", [5900, 5901], [X])  # the last IPv6 viewer evicted by an IPv4 click
    assert sorted(log.read_text().splitlines()) == [
        f"ip netns exec {netns.name} ip6tables-restore -w --noflush",
        f"ip netns exec {netns.name} iptables-restore -w --noflush"]
    assert set(fw.rules()) == {Rule("m1", p, X) for p in (5900, 5901)} | {
        Rule(f"other{i}", 6000 + i, Y) for i in range(5)}


@pytest.mark.netns
def test_real_traffic(netns: NetNS, client_netns: NetNS) -> None:
    server = netns
    veth_link(server, "10.99.0.1", client_netns, [X, Y])
    fw = make_fw(server)
    fw.ensure_chain()
    # what the firewall role adds after the hook
    server.run("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "5900:7000", "-j", "DROP")
    port = 5905
    with server.socket() as listener:
        listener.bind(("10.99.0.1", port))
        listener.listen(16)
        assert not can_connect(client_netns, X, "10.99.0.1", port)
        assert not can_connect(client_netns, Y, "10.99.0.1", port)

        fw.allow("m1", [port], [X])
        assert can_connect(client_netns, X, "10.99.0.1", port)
        assert not can_connect(client_netns, Y, "10.99.0.1", port)

        fw.allow("m1", [port], [X, Y])  # a second viewer
        assert can_connect(client_netns, Y, "10.99.0.1", port)
        assert can_connect(client_netns, X, "10.99.0.1", port)

        fw.close("m1")
        assert not can_connect(client_netns, Y, "10.99.0.1", port)
        assert not can_connect(client_netns, X, "10.99.0.1", port)


@pytest.mark.netns
def test_click_timing(netns: NetNS, capsys: pytest.CaptureFixture[str]) -> None:
    fw = make_fw(netns)
    fw.ensure_chain()
    for i in range(20):  # other machines in the chain, as on a busy host
        fw.allow(f"other{i}", [6000 + i], [Y])
    times = []
    for i in range(50):
        ip = X if i % 2 else "10.99.0.4"  # a new viewer each time, the other one evicted
        t0 = time.perf_counter()
        fw.allow("m1", [5900, 5901], [ip])
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    with capsys.disabled():
        print(f"\nFirewall.allow() per click: median {med * 1000:.1f} ms, "
              f"max {max(times) * 1000:.1f} ms over 50 calls (2 ports, 20 other rules)")
    assert len(fw.rules()) == 22
    assert med < 0.5
