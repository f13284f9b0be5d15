"""Load and validate /etc/ravada.conf (YAML).

The file path comes from ``--config``, then the ``RAVADA_CONFIG`` environment
variable, then ``/etc/ravada.conf``. Every key has a default, so an empty file
is valid for tools and tests; the daemons of a deployed host load it with
``required=True`` (``--config-required``): then a missing or empty file, or one
without ``database.url``, is an error. An unknown key or a value of the wrong
kind raises ``ConfigError`` naming the key and the reason.

rvd_back runs as root with what this file says, so values that would make root
run a program (a libvirt URI with the ``ext`` transport or a ``command=``) or
unlink and re-create a file anywhere (``queue.socket`` outside the runtime
directory) are refused, whoever wrote the file.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints
from urllib.parse import parse_qsl, urlsplit

import yaml

from ravada.auth.settings import AuthConfig
from ravada.auth.settings import check as check_auth

DEFAULT_PATH = "/etc/ravada.conf"
# The only directory queue.socket may live in (rvd_back's RuntimeDirectory). The
# environment can point it elsewhere (tests): only root sets a root daemon's environment.
RUNTIME_DIR = "/run/ravada"
RUNTIME_DIR_ENV = "RAVADA_RUNTIME_DIR"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or has a bad key."""


@dataclass
class DatabaseConfig:
    url: str = "sqlite:////var/lib/ravada/ravada.db"


@dataclass
class LibvirtConfig:
    uri: str = "qemu:///system"
    storage_pool: str = "default"


@dataclass
class QueueConfig:
    socket: str = "/run/ravada/queue.sock"
    workers: int = 4
    fallback_poll: float = 0.5
    request_timeout: int = 600
    shutdown_timeout: int = 60


@dataclass
class DisplayConfig:
    listen: str = "0.0.0.0"
    public_host: str = ""
    password_lifetime: int = 60
    spice_tls: bool = False
    spice_ca_file: str = "/etc/ravada/spice-ca.pem"
    spice_host_subject: str = ""
    direct_vnc: bool = False


@dataclass
class FirewallConfig:
    enabled: bool = True
    chain: str = "RAVADA"
    port_min: int = 5900
    port_max: int = 7000
    max_viewers: int = 4


@dataclass
class FrontConfig:
    listen: str = "0.0.0.0:8081"
    workers: int = 2
    secret_key_file: str = "/var/lib/ravada/front.key"
    trusted_proxies: list[str] = field(default_factory=lambda: ["127.0.0.1", "::1"])
    session_idle_minutes: int = 30
    session_max_hours: int = 12  # absolute session lifetime, however active
    iso_dir: str = "/var/lib/ravada/isos"
    # Uploads land here (written by the front's account); rvd_back copies them into iso_dir.
    iso_staging_dir: str = "/var/lib/ravada/iso-staging"
    iso_max_bytes: int = 64 * 1024 ** 3  # largest ISO uploaded or downloaded
    # An unfinished upload without a chunk for this long is removed (row and staged file).
    iso_upload_abandon_hours: int = 24
    novnc_dir: str = "/usr/share/novnc"
    max_waits_per_user: int = 4  # long-polls one user may hold at once (per front process)
    # Apache's LimitRequestBody must be the same number (the apache role takes it from rvd).
    max_request_bytes: int = 1024 * 1024
    # /metrics and the details of /healthz: these client addresses, or this bearer token.
    metrics_allow: list[str] = field(default_factory=lambda: ["127.0.0.1", "::1"])
    metrics_token: str = ""


@dataclass
class ConsoleConfig:
    listen: str = "127.0.0.1:8082"
    token_lifetime: int = 60


@dataclass
class NodeConfig:
    """This backend's hypervisor node (docs/nodes.md); empty values take the defaults."""

    name: str = ""  # default: the short host name
    display_address: str = ""  # default: display.public_host
    cluster_address: str = ""  # where rvd_console reaches VNC; "" = on the broker itself
    libvirt_uri: str = ""  # how other backends reach this libvirt (base copies); "" = none
    enabled: bool = True  # at the first registration; admins toggle it in the database
    heartbeat_timeout: int = 30
    max_desktops: int = 0
    memory_mb: int = 0
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""


@dataclass
class Config:
    log_level: str = "INFO"
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    libvirt: LibvirtConfig = field(default_factory=LibvirtConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    firewall: FirewallConfig = field(default_factory=FirewallConfig)
    front: FrontConfig = field(default_factory=FrontConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    node: NodeConfig = field(default_factory=NodeConfig)
    path: str | None = None


def _coerce(key: str, kind: Any, value: Any) -> Any:
    """Check ``value`` against the annotated ``kind``; return it converted."""
    if is_dataclass(kind):
        return _build(kind, value, key)
    origin = get_origin(kind)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        (item,) = get_args(kind)
        return [_coerce(f"{key}[{i}]", item, v) for i, v in enumerate(value)]
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def _build(cls: type, data: Any, prefix: str = "") -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'top level'}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls) if f.name != "path"}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in known:
            raise ConfigError(f"{dotted}: unknown key (known: {', '.join(sorted(known))})")
        kwargs[key] = _coerce(dotted, hints[key], value)
    return cls(**kwargs)


def _validate(cfg: Config) -> None:
    if cfg.log_level.upper() not in LOG_LEVELS:
        raise ConfigError(f"log_level: must be one of {', '.join(LOG_LEVELS)}")
    cfg.log_level = cfg.log_level.upper()
    if "://" not in cfg.database.url:
        raise ConfigError("database.url: expected an SQLAlchemy URL like sqlite:////path or "
                          "mysql+pymysql://user:pw@host/db")
    fw = cfg.firewall
    if not (1 <= fw.port_min <= fw.port_max <= 65535):
        raise ConfigError("firewall.port_min/port_max: need 1 <= port_min <= port_max <= 65535")
    chain_chars = fw.chain.replace("-", "").replace("_", "")
    if not fw.chain or len(fw.chain) > 28 or not chain_chars.isalnum():
        raise ConfigError("firewall.chain: 1-28 letters, digits, '-' or '_'")
    if not 1 <= fw.max_viewers <= 64:
        raise ConfigError("firewall.max_viewers: must be from 1 to 64")
    if cfg.display.password_lifetime < 5:
        raise ConfigError("display.password_lifetime: must be at least 5 seconds")
    if cfg.queue.workers < 1:
        raise ConfigError("queue.workers: must be at least 1")
    if cfg.front.max_waits_per_user < 1:
        raise ConfigError("front.max_waits_per_user: must be at least 1")
    if cfg.queue.fallback_poll <= 0:
        raise ConfigError("queue.fallback_poll: must be a positive number of seconds")
    check_libvirt_uri(cfg.libvirt.uri)
    check_socket_path(cfg.queue.socket, runtime_dir())
    for key, listen in (("front.listen", cfg.front.listen), ("console.listen", cfg.console.listen)):
        parse_listen(listen, key)
    for key in ("trusted_proxies", "metrics_allow"):
        for i, net in enumerate(getattr(cfg.front, key)):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ConfigError(f"front.{key}[{i}]: {exc}") from None
    if not 1024 <= cfg.front.max_request_bytes <= 1024 ** 3:
        raise ConfigError("front.max_request_bytes: from 1024 to 1073741824")
    if not 1024 ** 2 <= cfg.front.iso_max_bytes <= 1024 ** 4:
        raise ConfigError("front.iso_max_bytes: from 1048576 to 1099511627776")
    if not 1 <= cfg.front.iso_upload_abandon_hours <= 8760:
        raise ConfigError("front.iso_upload_abandon_hours: from 1 to 8760 (a year)")
    for key in ("iso_dir", "iso_staging_dir"):
        if not os.path.isabs(getattr(cfg.front, key)):
            raise ConfigError(f"front.{key}: an absolute path")
    if os.path.normpath(cfg.front.iso_dir) == os.path.normpath(cfg.front.iso_staging_dir):
        raise ConfigError("front.iso_staging_dir: must not be front.iso_dir (the web account "
                          "writes it)")
    token = cfg.front.metrics_token
    if token and (len(token) < 16 or not token.isprintable() or " " in token):
        raise ConfigError("front.metrics_token: at least 16 printable characters, no spaces "
                          "(or empty: addresses only)")
    try:
        ipaddress.ip_address(cfg.display.listen)
    except ValueError:
        raise ConfigError(f"display.listen: not an IP address: {cfg.display.listen!r}") from None
    _check_node(cfg.node)
    try:
        check_auth(cfg.auth)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def _check_node(node: NodeConfig) -> None:
    if node.name and not NODE_NAME.fullmatch(node.name):
        raise ConfigError(f"node.name: 1-63 letters, digits, '.', '-' or '_', got {node.name!r}")
    if not 5 <= node.heartbeat_timeout <= 3600:
        raise ConfigError("node.heartbeat_timeout: from 5 to 3600 seconds")
    for key in ("max_desktops", "memory_mb"):
        if getattr(node, key) < 0:
            raise ConfigError(f"node.{key}: 0 (no override) or more")
    for key in ("display_address", "cluster_address"):
        value = getattr(node, key)
        if value and (not value.isprintable() or " " in value or "/" in value):
            raise ConfigError(f"node.{key}: a host name or IP address, got {value!r}")
    if node.libvirt_uri:
        check_libvirt_uri(node.libvirt_uri, "node.libvirt_uri")
    for key in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        if getattr(node, key) and not os.path.isabs(getattr(node, key)):
            raise ConfigError(f"node.{key}: an absolute path")


def check_libvirt_uri(uri: str, key: str = "libvirt.uri") -> None:
    """Refuse URIs that make libvirt's client (root, in rvd_back) run a program.

    The ``ext`` transport runs ``command=``; ssh-based transports also honour
    ``command=`` as the program to run. Plain local and TLS/TCP/SSH URIs pass.
    """
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise ConfigError(f"{key}: not a URI: {exc}") from None
    scheme = parts.scheme.lower()
    if not scheme or not re.fullmatch(r"[a-z0-9_-]+(\+[a-z0-9_-]+)?", scheme):
        raise ConfigError(f"{key}: expected driver[+transport]://..., got {uri!r}")
    if "+" in scheme and scheme.split("+", 1)[1] == "ext":
        raise ConfigError(f"{key}: the ext transport runs an external program as root: refused")
    for name, _value in parse_qsl(parts.query, keep_blank_values=True):
        if name.strip().lower() == "command":
            raise ConfigError(f"{key}: the command= parameter runs a program as root: refused")


def runtime_dir() -> str:
    """The directory queue.socket must be in ($RAVADA_RUNTIME_DIR or /run/ravada)."""
    return os.environ.get(RUNTIME_DIR_ENV) or RUNTIME_DIR


def check_socket_path(path: str, directory: str, key: str = "queue.socket") -> None:
    """rvd_back (root) unlinks and re-creates the socket: keep it inside ``directory``."""
    if not path.startswith("/"):
        raise ConfigError(f"{key}: must be an absolute path in {directory}, got {path!r}")
    if ".." in path.split("/"):
        raise ConfigError(f"{key}: '..' is not allowed, got {path!r}")
    norm, base = posixpath.normpath(path), posixpath.normpath(directory)
    if not norm.startswith(base.rstrip("/") + "/"):
        raise ConfigError(f"{key}: must be inside the runtime directory {base}, got {path!r}")
    if norm == base:
        raise ConfigError(f"{key}: must be a file inside {base}, not the directory itself")


def parse_listen(listen: str, key: str = "listen") -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` too) and check the port."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{key}: expected HOST:PORT, got {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def config_path(explicit: str | None = None) -> str:
    return explicit or os.environ.get("RAVADA_CONFIG") or DEFAULT_PATH


def load(path: str | None = None, *, missing_ok: bool = True,
         required: bool = False) -> Config:
    """Read, validate and return the configuration.

    A missing file gives the defaults when ``missing_ok`` (tools and tests); a
    file that exists but is invalid always raises. ``required`` (the daemons on a
    deployed host, ``--config-required``) makes a missing or empty file, or one
    without ``database.url``, an error: the defaults would start a fresh SQLite
    database, a front on every address and an empty firewall chain.
    """
    resolved = config_path(path)
    p = Path(resolved)
    if not p.exists():
        if required or not missing_ok:
            raise ConfigError(f"{resolved}: no such file")
        cfg = Config()
    else:
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{resolved}: cannot read: {exc}") from None
        if required:
            if not data:
                raise ConfigError(f"{resolved}: the file is empty (required on a deployed host)")
            database = data.get("database") if isinstance(data, dict) else None
            if not isinstance(database, dict) or not database.get("url"):
                raise ConfigError(f"database.url: missing in {resolved} (required on a "
                                  "deployed host)")
        cfg = _build(Config, data)
    cfg.path = resolved
    _validate(cfg)
    return cfg


def from_dict(data: dict[str, Any]) -> Config:
    """Build a validated Config from a mapping (tests and tools)."""
    cfg = _build(Config, data)
    _validate(cfg)
    return cfg
