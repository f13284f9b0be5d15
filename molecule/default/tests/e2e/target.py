"""The molecule host under test, seen from the controller."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
FIRST_PLATFORM = "debian12"  # its screenshots are the README's pictures


@dataclass
class Target:
    """One converged container: name, address, inventory variables, testinfra host."""

    name: str
    ip: str
    variables: dict[str, Any]
    host: Any  # testinfra Host

    @classmethod
    def from_host(cls, host: Any) -> Target:
        variables = host.ansible.get_variables()
        name = str(variables.get("inventory_hostname") or host.backend.get_pytest_id())
        out = host.run("ip -4 -o route get 1.1.1.1 2>/dev/null || ip -4 -o addr show eth0")
        m = re.search(r"src (\d+\.\d+\.\d+\.\d+)", out.stdout) or re.search(
            r"inet (\d+\.\d+\.\d+\.\d+)", out.stdout)
        if not m:
            raise RuntimeError(f"cannot find {name}'s IPv4 address: {out.stdout!r} {out.stderr!r}")
        return cls(name, m.group(1), variables, host)

    def controller_ip(self) -> str:
        """The controller's own address towards this container (what the container sees)."""
        out = subprocess.run(["ip", "-4", "-o", "route", "get", self.ip], capture_output=True,
                             text=True, check=True).stdout
        m = re.search(r"src (\d+\.\d+\.\d+\.\d+)", out)
        if not m:
            raise RuntimeError(f"no route from the controller to {self.ip}: {out!r}")
        return m.group(1)

    def var(self, key: str, default: Any = None) -> Any:
        """An inventory variable (the molecule scenario's group_vars)."""
        return self.variables.get(key, default)

    def run(self, command: str, *args: str) -> Any:
        """Run a command in the container and assert it worked; return the result."""
        result = self.host.run(command, *args)
        assert result.rc == 0, f"{command % args if args else command}: {result.stderr}"
        return result

    def artifact(self, kind: str, suffix: str = "png") -> Path:
        """Where to save an artifact: ``<kind>.png`` for the first platform, else prefixed."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        stem = kind if self.name == FIRST_PLATFORM else f"{self.name}-{kind}"
        return ARTIFACTS / f"{stem}.{suffix}"


def record_timing(platform: str, values: dict[str, Any]) -> Path:
    """Merge *values* under *platform* into ``artifacts/timings.json``."""
    path = ARTIFACTS / "timings.json"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[platform] = {**data.get(platform, {}), **values}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path
