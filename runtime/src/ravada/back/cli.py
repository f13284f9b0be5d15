"""``rvd_back``: the daemon (no action flag) and the admin commands.

Exit status: 0 ok, 1 error (message on stderr, prefixed ``rvd_back:``), 2 usage.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import sys
from collections.abc import Sequence

import ravada
from ravada import config as rconfig
from ravada.back import admin
from ravada.db import Database
from ravada.db.migrate import upgrade
from ravada.passwords import PasswordError

PROG = "rvd_back"


class CliError(Exception):
    """Printed as ``rvd_back: <message>``; exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Ravada backend: with no action it runs the daemon that "
        "executes queued requests; the actions below administer users and machines.")
    p.add_argument("--config", metavar="PATH",
                   help=f"configuration file (default: $RAVADA_CONFIG or {rconfig.DEFAULT_PATH})")
    p.add_argument("--config-required", action="store_true",
                   help="a missing or empty configuration file is an error (the units pass it)")
    p.add_argument("--version", action="version", version=f"{PROG} {ravada.__version__}")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--add-user", metavar="NAME", help="create a local user")
    act.add_argument("--change-password", metavar="NAME", help="set a user's password")
    act.add_argument("--make-admin", metavar="NAME", help="give a user admin rights")
    act.add_argument("--remove-admin", metavar="NAME", help="take admin rights away")
    act.add_argument("--remove-user", metavar="NAME", help="delete a user (owning no machine)")
    act.add_argument("--reset-totp", metavar="NAME",
                     help="remove a user's second factor (logged as totp_reset)")
    act.add_argument("--list", action="store_true", help="list machines")
    act.add_argument("--add-group", metavar="GROUP", help="create a local group")
    act.add_argument("--add-to-group", nargs=2, metavar=("GROUP", "USER"),
                     help="put a user in a local group")
    act.add_argument("--remove-from-group", nargs=2, metavar=("GROUP", "USER"),
                     help="take a user out of a local group")
    act.add_argument("--list-groups", action="store_true",
                     help="list groups (local and directory) with their members")
    act.add_argument("--import-domain", metavar="NAME",
                     help="adopt an existing libvirt domain as a machine")
    act.add_argument("--add-base", metavar="IMAGE",
                     help="make a prepared base from the disk image volume IMAGE "
                          "(<name>.image.qcow2 in the storage pool); needs --name")
    act.add_argument("--hibernate", metavar="MACHINE", nargs="*",
                     help="hibernate the named machines (or every running one with --all)")
    act.add_argument("--shutdown", metavar="MACHINE", nargs="*",
                     help="shut down the named machines (or every running one with --all)")
    act.add_argument("--upgrade-db", action="store_true", help="apply database migrations")
    p.add_argument("--password-file", metavar="FILE",
                   help="read the password from the first line of FILE ('-' for stdin)")
    p.add_argument("--admin", action="store_true", help="with --add-user: make it an admin")
    p.add_argument("--owner", metavar="NAME", help="with --import-domain: the owner")
    p.add_argument("--all", action="store_true", help="with --hibernate/--shutdown")
    p.add_argument("--name", help="with --add-base: the machine name")
    p.add_argument("--description", default="", help="with --add-base: shown to users")
    p.add_argument("--memory", type=int, default=512, metavar="MB", help="with --add-base")
    p.add_argument("--vcpus", type=int, default=1, help="with --add-base")
    p.add_argument("--public", action="store_true", help="with --add-base: offer it to users")
    p.add_argument("--wait", type=float, default=600, metavar="SECONDS",
                   help="with --hibernate/--shutdown: how long to wait (default 600)")
    return p


def _check_usage(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    if a.admin and not a.add_user:
        p.error("--admin goes with --add-user")
    if a.password_file and not (a.add_user or a.change_password):
        p.error("--password-file goes with --add-user or --change-password")
    if a.owner and not a.import_domain:
        p.error("--owner goes with --import-domain")
    if a.add_base and not a.name:
        p.error("--add-base needs --name")
    if (a.name or a.description or a.public) and not a.add_base:
        p.error("--name, --description and --public go with --add-base")
    bulk = a.hibernate if a.hibernate is not None else a.shutdown
    if a.all and bulk is None:
        p.error("--all goes with --hibernate or --shutdown")
    if bulk is not None and not a.all and not bulk:
        p.error("name the machines, or use --all")
    if bulk and a.all:
        p.error("give machine names or --all, not both")


def _read_password(path: str | None) -> str:
    if path:
        try:
            text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
        except OSError as exc:
            raise CliError(f"cannot read password file: {exc.strerror}: {path}") from None
        lines = text.splitlines()
        if not lines or not lines[0]:
            raise CliError(f"password file {path} is empty")
        return lines[0]
    if not sys.stdin.isatty():
        raise CliError("no terminal to ask for the password: use --password-file")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise CliError("the passwords do not match")
    return first


def _bulk(cfg: rconfig.Config, db: Database, command: str, names: list[str],
          all_: bool, wait: float) -> int:
    admin.require_backend(db)
    machines = admin.machines_for(db, names, all_, ("running", "paused"))
    if not machines:
        print(f"no machine to {command}")
        return 0
    failed = 0
    for name, req in admin.run_requests(cfg, db, command, machines, wait):
        if req.status == "done":
            print(f"{command} {name}: done")
        else:
            failed += 1
            reason = req.error or f"still {req.status} after {wait:.0f} s"
            print(f"{PROG}: {command} {name}: {reason}", file=sys.stderr)
    return 1 if failed else 0


def _admin(cfg: rconfig.Config, a: argparse.Namespace) -> int:
    db = Database(cfg.database.url)
    try:
        if a.upgrade_db:
            before, head = upgrade(db.engine)
            if before == head:
                print(f"database is up to date at {head}")
            else:
                print(f"database upgraded from {before or 'empty'} to {head}")
            return 0
        upgrade(db.engine)  # every other action needs the current schema
        if a.add_user:
            admin.add_user(db, a.add_user, _read_password(a.password_file), a.admin)
            print(f"created user {a.add_user}{' (admin)' if a.admin else ''}")
        elif a.change_password:
            admin.set_password(db, a.change_password, _read_password(a.password_file))
            print(f"password changed for {a.change_password}")
        elif a.make_admin:
            admin.set_admin(db, a.make_admin, True)
            print(f"{a.make_admin} is now an admin")
        elif a.remove_admin:
            admin.set_admin(db, a.remove_admin, False)
            print(f"{a.remove_admin} is no longer an admin")
        elif a.remove_user:
            admin.remove_user(db, a.remove_user)
            print(f"removed user {a.remove_user}")
        elif a.reset_totp:
            was = admin.reset_totp(db, a.reset_totp)
            print(f"second factor of {a.reset_totp} {'removed' if was else 'was not set'}")
        elif a.list:
            print(admin.format_table(admin.list_machines(db)))
        elif a.add_group or a.add_to_group or a.remove_from_group or a.list_groups:
            print(admin.groups_command(db, a.add_group, a.add_to_group, a.remove_from_group))
        elif a.import_domain:
            machine_id = admin.import_domain(cfg, db, a.import_domain, a.owner)
            print(f"imported {a.import_domain} as machine {machine_id}")
        elif a.add_base:
            machine_id, made = admin.add_base(cfg, db, a.add_base, a.name, a.description,
                                              a.memory, a.vcpus, a.public, a.wait)
            print(f"{'created' if made else 'kept'} base {a.name} (machine {machine_id})")
        elif a.hibernate is not None:
            return _bulk(cfg, db, "hibernate", a.hibernate, a.all, a.wait)
        elif a.shutdown is not None:
            return _bulk(cfg, db, "shutdown", a.shutdown, a.all, a.wait)
        return 0
    finally:
        db.dispose()


def _daemon(cfg: rconfig.Config) -> int:
    from ravada.back.daemon import Daemon

    daemon = Daemon(cfg)

    def _stop(signum: int, _frame: object) -> None:
        logging.getLogger(__name__).info("%s: stopping", signal.Signals(signum).name)
        daemon.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        daemon.start()
        daemon.run()
    finally:
        stuck = daemon.busy
        daemon.close()
    if stuck:  # worker threads blocked in libvirt: do not let interpreter exit join them
        logging.shutdown()
        os._exit(0)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    _check_usage(parser, a)
    try:
        cfg = rconfig.load(a.config, required=a.config_required)
    except rconfig.ConfigError as exc:
        print(f"{PROG}: bad configuration: {exc}", file=sys.stderr)
        return 1
    is_admin = any(getattr(a, k) not in (None, False) for k in (
        "add_user", "change_password", "make_admin", "remove_admin", "remove_user", "list",
        "reset_totp",
        "add_group", "add_to_group", "remove_from_group", "list_groups",
        "import_domain", "add_base", "hibernate", "shutdown", "upgrade_db"))
    # The daemon logs to stdout (journald); admin commands keep stdout for their output.
    logging.basicConfig(stream=sys.stderr if is_admin else sys.stdout,
                        level="WARNING" if is_admin else cfg.log_level,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return _admin(cfg, a) if is_admin else _daemon(cfg)
    except (CliError, admin.AdminError, PasswordError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 1
    except Exception as exc:  # a clear line, not a traceback, for the usual failures
        logging.getLogger(__name__).debug("failure", exc_info=True)
        print(f"{PROG}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
