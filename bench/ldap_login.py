#!/usr/bin/env python3
"""Directory login vs local login through rvd_front, against a local slapd.

Target (issue 12): a directory login adds at most 50 ms (median) over a local login.
Both go through the real front (Flask app, ``POST /api/v1/session``: rate-limit read,
the auth backends of ``auth.order: [local, ldap]``, the login row written) on a SQLite
database; the directory is Debian's slapd started on loopback by the runtime tests'
fixture (StartTLS with a test CA, service bind, groups by groupOfNames ``member``, an
admin group), so a directory login is: the local backend's miss (same argon2 work as a
real check), one user search, one user bind, one group search, the user row refreshed.
Logins alternate local/directory so both see the same machine noise; the first of each
(connection set-up, first TLS handshake) is a warm-up and not counted.

    .venv/bin/python bench/ldap_login.py [-n 200]

Writes ``bench/results/ldap_login.json`` with the git commit and the machine's load.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "runtime" / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from directory import GROUPS, SERVICE_DN, SERVICE_PW, USERS, Slapd  # noqa: E402

from benchlib import env, results, stats  # noqa: E402
from ravada import config as rconfig  # noqa: E402
from ravada.db import Database, User  # noqa: E402
from ravada.db.migrate import upgrade  # noqa: E402
from ravada.front import create_app  # noqa: E402
from ravada.passwords import hash_password  # noqa: E402

LOCAL_PW = "local-user-password-1"
TARGET_MS = 50.0


def git_commit() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                         text=True, check=False)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "runtime"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="logins of each kind (default 200)")
    opts = parser.parse_args()
    env_info = {"machine": env.machine(), "versions": env.versions(None)}
    print(env.describe(env_info))
    started = results.utc_now()
    with tempfile.TemporaryDirectory(prefix="ravada-ldap-bench-") as tmp:
        d = Path(tmp)
        os.environ["RAVADA_RUNTIME_DIR"] = tmp  # the queue socket must live under it
        slapd = Slapd(d / "slapd").start()
        try:
            db = Database(f"sqlite:///{d / 'ravada.db'}")
            upgrade(db.engine)
            with db.session() as s:
                s.add(User(name="localuser", password_hash=hash_password(LOCAL_PW)))
            cfg = rconfig.from_dict({
                "database": {"url": db.url},
                "queue": {"socket": str(d / "q.sock")},
                "front": {"secret_key_file": str(d / "front.key")},
                "auth": {"order": ["local", "ldap"], "ldap": {
                    "uris": [slapd.ldap_uri], "start_tls": True, "ca_file": str(slapd.ca_file),
                    "bind_dn": SERVICE_DN, "bind_password": SERVICE_PW, "preset": "openldap",
                    "user_base": USERS, "group_base": GROUPS, "group_membership": "member",
                    "admin_group": "rvdadmins"}},
            })
            app = create_app(cfg, db)
            client = app.test_client()
            who = {"local": ("localuser", LOCAL_PW), "ldap": ("alice", slapd.people["alice"][0])}
            samples: dict[str, list[float]] = {"local": [], "ldap": [], "backend": []}
            ldap_backend = app.extensions["ravada"].auth.backends[1]
            for i in range(opts.n + 1):
                for kind, (name, password) in who.items():
                    t0 = time.perf_counter()
                    resp = client.post("/api/v1/session", json={"name": name,
                                                                "password": password})
                    elapsed = (time.perf_counter() - t0) * 1000
                    if resp.status_code != 200:
                        raise SystemExit(f"{kind} login failed: {resp.status_code} "
                                         f"{resp.get_data(as_text=True)[:200]}")
                    if i:
                        samples[kind].append(elapsed)
                    client.delete("/api/v1/session")
                # the directory's share alone: the ldap backend as the front calls it
                t0 = time.perf_counter()
                assert ldap_backend.authenticate(None, *who["ldap"]) is not None
                if i:
                    samples["backend"].append((time.perf_counter() - t0) * 1000)
            db.dispose()
        finally:
            slapd.stop()
    local, ldap = stats.summary(samples["local"], 2), stats.summary(samples["ldap"], 2)
    backend = stats.summary(samples["backend"], 2)
    overhead = round(float(ldap["median"]) - float(local["median"]), 2)
    paired = stats.summary([b - a for a, b in zip(samples["local"], samples["ldap"],
                                                  strict=True)], 2)
    print(f"local login     median {local['median']} ms  p95 {local['p95']} ms  (n={local['n']})")
    print(f"directory login median {ldap['median']} ms  p95 {ldap['p95']} ms  (n={ldap['n']})")
    print(f"directory overhead (median difference): {overhead} ms (target <= {TARGET_MS} ms)")
    print(f"paired differences median {paired['median']} ms; the ldap backend alone: median "
          f"{backend['median']} ms, p95 {backend['p95']} ms")
    data = {
        "name": "ldap_login", "commit": git_commit(), "env": env_info, "started": started,
        "finished": results.utc_now(),
        "setup": "rvd_front test client, SQLite, auth.order [local, ldap], local slapd with "
                 "StartTLS + service bind + groupOfNames groups + admin group",
        "local_ms": local, "ldap_ms": ldap, "overhead_median_ms": overhead,
        "paired_difference_ms": paired, "ldap_backend_alone_ms": backend,
        "rows": [
            results.row("local login median", local["median"], "ms"),
            results.row("directory login median", ldap["median"], "ms"),
            results.row("directory overhead (median)", overhead, "ms", f"<= {TARGET_MS:g} ms",
                        overhead <= TARGET_MS),
            results.row("ldap backend alone (median)", backend["median"], "ms"),
        ],
        "samples_ms": {k: [round(v, 2) for v in vals] for k, vals in samples.items()},
    }
    print("wrote", results.save("ldap_login", data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
