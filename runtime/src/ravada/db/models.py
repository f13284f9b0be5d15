"""SQLAlchemy 2 models: the schema shared by rvd_back and rvd_front.

Schema changes go through Alembic (``ravada/db/migrations``); never edit a
table here without adding a migration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.mysql import DATETIME as MYSQL_DATETIME
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Microsecond timestamps on MariaDB too (request latencies are measured in ms).
Timestamp = DateTime().with_variant(MYSQL_DATETIME(fsp=6), "mysql", "mariadb")


def utcnow() -> datetime:
    """Naive UTC now: SQLite and MariaDB both store naive datetimes."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    auth_backend: Mapped[str] = mapped_column(String(32), default="local")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    # Bumped to end every session of the user (logout, password change, reset, disable):
    # a session cookie carries the version it was signed in with.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Directory users: the names of their directory groups, as read at the last login.
    directory_groups: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    groups_read_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    # Second factor (ravada.auth.totp): the TOTP secret encrypted with auth.totp.key_file;
    # set but not enabled while the user has not confirmed a code yet.
    totp_secret: Mapped[str | None] = mapped_column(String(255), nullable=True)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    # The last time step a code was accepted for: a code is never accepted twice.
    totp_last_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Single sign-on users: the provider account (its ``sub``) the row is bound to at the
    # first login; None until then, and again after an admin (re)links the row.
    oidc_subject: Mapped[str | None] = mapped_column(String(255), nullable=True, unique=True)
    # The language the user picked on the account page (None: the browser's Accept-Language).
    locale: Mapped[str | None] = mapped_column(String(16), nullable=True)

    machines: Mapped[list[Machine]] = relationship(back_populates="owner")


class Group(Base):
    """A group of users: ``local`` (members kept here) or ``ldap`` (members from the directory)."""

    __tablename__ = "user_groups"
    __table_args__ = (UniqueConstraint("source", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(16), default="local")
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    # Machines each member may have running at once: None sets no limit (the global
    # max_running_per_user applies), 0 means no limit; a user gets their most generous group's.
    max_running: Mapped[int | None] = mapped_column(Integer, nullable=True)


class GroupMember(Base):
    """Membership of a user in a local group."""

    __tablename__ = "user_group_members"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("user_groups.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)


class BaseAccess(Base):
    """A base's access list: when a base has rows here, only these groups see it."""

    __tablename__ = "base_access"

    machine_id: Mapped[int] = mapped_column(
        ForeignKey("machines.id", ondelete="CASCADE"), primary_key=True)
    group_id: Mapped[int] = mapped_column(
        ForeignKey("user_groups.id", ondelete="CASCADE"), primary_key=True, index=True)


class Machine(Base):
    """A libvirt domain managed by Ravada: a plain machine, a base or a clone.

    A base carries the classroom policy of its clones (see ``ravada.policy``); a clone
    carries its connection state and the deadlines the daemon sleeps on.
    """

    __tablename__ = "machines"
    # the bases list: WHERE is_base ORDER BY name; one desktop per user per base (NULLs are
    # distinct: pool clones have no owner)
    __table_args__ = (
        Index("ix_machines_is_base_name", "is_base", "name"),
        UniqueConstraint("base_id", "owner_id", name="uq_machines_base_owner"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    base_id: Mapped[int | None] = mapped_column(
        ForeignKey("machines.id", ondelete="RESTRICT"), nullable=True, index=True
    )
    is_base: Mapped[bool] = mapped_column(Boolean, default=False)
    is_public: Mapped[bool] = mapped_column(Boolean, default=False)
    # creating | shutdown | running | paused | hibernated | removing | failed | unknown
    state: Mapped[str] = mapped_column(String(16), default="creating", index=True)
    memory_mb: Mapped[int] = mapped_column(Integer, default=1024)
    vcpus: Mapped[int] = mapped_column(Integer, default=1)
    disk_gb: Mapped[int] = mapped_column(Integer, default=0)
    iso: Mapped[str | None] = mapped_column(String(255), nullable=True)
    domain_uuid: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # {"listen": ip, "spice": port, "spice_tls": port|None, "vnc": port}
    display: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # what the guest agent reported: {"hostname": str|None, "addresses": [..]}; None: no agent
    guest_info: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # {"spice": bool, "vnc": bool, "sound": bool, "usb_redirect": bool, "extra_disks": int,
    #  "next_start": {"memory_mb": n, "vcpus": n}}: see ravada.hardware; None: the defaults
    hardware: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    last_started_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)
    # policy (on a base; ``volatile`` is copied onto its clones)
    volatile: Mapped[bool] = mapped_column(Boolean, default=False)
    pool_size: Mapped[int] = mapped_column(Integer, default=0)
    pool_started: Mapped[int] = mapped_column(Integer, default=0)
    run_timeout: Mapped[int] = mapped_column(Integer, default=0)
    shutdown_disconnected: Mapped[bool] = mapped_column(Boolean, default=False)
    shutdown_grace: Mapped[int] = mapped_column(Integer, default=300)
    # clone state: an unassigned pool clone, display clients now, deadlines
    is_pool: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    clients: Mapped[int] = mapped_column(Integer, default=0)
    last_connected_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    run_until: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True, index=True)
    idle_until: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True, index=True)
    # the hypervisor node its domain lives on (None: not placed yet, adopted at a start)
    node_id: Mapped[int | None] = mapped_column(
        ForeignKey("nodes.id", ondelete="SET NULL"), nullable=True, index=True)
    # a base: the nodes its clones may be placed on (node names); None: any
    pinned_nodes: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)

    owner: Mapped[User | None] = relationship(back_populates="machines")
    base: Mapped[Machine | None] = relationship(remote_side="Machine.id", back_populates="clones")
    clones: Mapped[list[Machine]] = relationship(back_populates="base")


class Request(Base):
    """A command for rvd_back, written by the front or the CLI."""

    __tablename__ = "requests"
    __table_args__ = (Index("ix_requests_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    command: Mapped[str] = mapped_column(String(32))
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    machine_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    # requested | working | done | failed
    status: Mapped[str] = mapped_column(String(16), default="requested")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    timeout: Mapped[int | None] = mapped_column(Integer, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # only this node's backend claims it; None: any backend
    node_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)


class FirewallRule(Base):
    """An opened display port: ``client_ip`` may reach ``port`` of ``machine_id``.

    ``user_id`` is the user who opened it (their openings close when they are disabled);
    ``created_at`` is the viewer's latest opening (the oldest viewer goes first at the cap).
    """

    __tablename__ = "firewall_rules"
    __table_args__ = (UniqueConstraint("machine_id", "port", "client_ip"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    machine_id: Mapped[int] = mapped_column(
        ForeignKey("machines.id", ondelete="CASCADE"), index=True
    )
    client_ip: Mapped[str] = mapped_column(String(45))
    port: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True)


class Setting(Base):
    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)


class Backend(Base):
    """One running rvd_back process and its heartbeat."""

    __tablename__ = "backends"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[str] = mapped_column(String(32), default="")
    started_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class Node(Base):
    """A hypervisor host running its own rvd_back; its heartbeat says it is up and its load."""

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    display_address: Mapped[str] = mapped_column(String(255), default="")
    cluster_address: Mapped[str] = mapped_column(String(255), default="")
    libvirt_uri: Mapped[str] = mapped_column(String(255), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    draining: Mapped[bool] = mapped_column(Boolean, default=False)
    max_desktops: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb: Mapped[int] = mapped_column(Integer, default=0)
    mem_total_mb: Mapped[int] = mapped_column(Integer, default=0)
    mem_free_mb: Mapped[int] = mapped_column(Integer, default=0)
    running: Mapped[int] = mapped_column(Integer, default=0)
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[str] = mapped_column(String(32), default="")
    heartbeat_timeout: Mapped[int] = mapped_column(Integer, default=30)
    heartbeat_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)


class BaseCopy(Base):
    """A base's volumes on a node: ``ready`` once copied and checksummed."""

    __tablename__ = "base_copies"
    __table_args__ = (UniqueConstraint("machine_id", "node_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    machine_id: Mapped[int] = mapped_column(ForeignKey("machines.id", ondelete="CASCADE"))
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="copying")  # copying|ready|failed
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


class ApiToken(Base):
    """A bearer token for automation; only its hash is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64), default="")
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)


class LoginAttempt(Base):
    """Login outcomes, for rate limiting across front workers and for metrics."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_ip_at", "client_ip", "at"),
                      Index("ix_login_attempts_username_at", "username", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The throttled network: the IPv4 address, or the IPv6 /64 ("2001:db8:1:2::/64").
    client_ip: Mapped[str] = mapped_column(String(45))
    username: Mapped[str] = mapped_column(String(64))
    ok: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, index=True)


class RecoveryCode(Base):
    """A one-time recovery code of a user's second factor; only its keyed hash is kept."""

    __tablename__ = "totp_recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)


class ConsoleSession(Base):
    """A browser-console connection through rvd_console."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    machine_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    client_ip: Mapped[str] = mapped_column(String(45), default="")
    started_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)


class Iso(Base):
    """An ISO of the library: uploaded through the front, downloaded by rvd_back from a
    URL, or found in the ISO directory. Only a ``ready`` ISO is a file of the ISO
    directory under ``name``; the others are transfers (``received`` of ``size`` bytes).
    """

    __tablename__ = "isos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    # uploading | downloading | verifying | ready | failed
    state: Mapped[str] = mapped_column(String(16), default="uploading")
    source: Mapped[str] = mapped_column(String(16), default="upload")  # upload | url | local
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)  # 0: not known yet (a URL)
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    expected_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kind: Mapped[str | None] = mapped_column(String(16), nullable=True)  # iso9660 | udf
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)
