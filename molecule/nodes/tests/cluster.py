"""The three containers of the nodes scenario, seen from the controller (docker exec)."""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass

BROKER = "nodes-broker"
NODES = ("nodes-node1", "nodes-node2")
MEMBERS = (BROKER, *NODES)


@dataclass(frozen=True)
class Member:
    """One container: its name and address on docker's bridge."""

    name: str

    @property
    def ip(self) -> str:
        out = subprocess.run(["docker", "inspect", self.name], capture_output=True, text=True,
                             check=True).stdout
        nets = json.loads(out)[0]["NetworkSettings"]["Networks"]
        return next(iter(nets.values()))["IPAddress"]

    def sh(self, command: str, *, check: bool = True,
           timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run *command* with sh -c in the container (as root)."""
        proc = subprocess.run(["docker", "exec", self.name, "sh", "-c", command],
                              capture_output=True, text=True, timeout=timeout, check=False)
        if check:
            assert proc.returncode == 0, f"{self.name}: {command}: {proc.stderr.strip()}"
        return proc

    def python(self, code: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run *code* with the runtime's venv (Debian's python3 + the runtime's packages)."""
        return self.sh(f"/opt/ravada/venv/bin/python -c {shlex.quote(code)}", check=check)

    def config(self) -> dict:
        """/etc/ravada.conf as data."""
        code = "import json, yaml; print(json.dumps(yaml.safe_load(open('/etc/ravada.conf'))))"
        return json.loads(self.python(code).stdout)


broker = Member(BROKER)
nodes = tuple(Member(n) for n in NODES)
