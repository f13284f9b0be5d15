"""The firewall role's own templates (rules and apply script), rendered for a test namespace.

Tests load the static rules exactly as the role writes them, so the runtime's chain is
checked together with the ESTABLISHED accept and the DROP that really sit around it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from netns import NetNS

ROLE = Path(__file__).resolve().parents[2] / "roles" / "firewall"


def render(name: str, **variables: Any) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE / "templates"),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.get_template(name).render(**variables)


def apply_role(ns: NetNS, tmp: Path, admin_workstations: tuple[str, ...] = (),
               port_min: int = 5900, port_max: int = 7000, ipv6: bool = True, *,
               display_proxies: tuple[str, ...] = (), cluster_ports: tuple[int, ...] = (),
               cluster_sources: tuple[str, ...] = ()) -> None:
    """Write the role's rules and script under ``tmp`` and run the script inside ``ns``.

    The defaults are a single host's (no hypervisor nodes): no proxy, no cluster port.
    """
    variables: dict[str, Any] = {
        "ansible_managed": "test", "firewall_static_chain": "RAVADA-STATIC",
        "firewall_dynamic_chain": "RAVADA", "firewall_allow_loopback": True,
        "firewall_admin_workstations": list(admin_workstations), "firewall_ipv6": ipv6,
        "firewall_display_proxies": list(display_proxies),
        "firewall_cluster_ports": list(cluster_ports),
        "firewall_cluster_sources": list(cluster_sources),
        "__firewall_port_range": f"{port_min}:{port_max}",
        "__firewall_rules_path": str(tmp / "firewall.rules"),
        "__firewall_rules6_path": str(tmp / "firewall6.rules"),
        "__firewall_script_path": str(tmp / "ravada-firewall"),
    }
    for family, path in ((4, "firewall.rules"), (6, "firewall6.rules")):
        (tmp / path).write_text(render("firewall.rules.j2", __firewall_family=family,
                                       **variables))
    script = tmp / "ravada-firewall"
    script.write_text(render("ravada-firewall.sh.j2", **variables))
    ns.run("sh", str(script))
