"""Database access: models, engine/session factory and migrations."""

from ravada.db.models import (
    ApiToken,
    Backend,
    Base,
    BaseAccess,
    BaseCopy,
    ConsoleSession,
    FirewallRule,
    Group,
    GroupMember,
    Iso,
    LoginAttempt,
    Machine,
    Node,
    RecoveryCode,
    Request,
    Setting,
    User,
    utcnow,
)
from ravada.db.session import Database

__all__ = [
    "ApiToken", "Backend", "Base", "BaseAccess", "BaseCopy", "ConsoleSession", "Database",
    "FirewallRule",
    "Group", "GroupMember", "Iso", "LoginAttempt",
    "Machine", "Node", "RecoveryCode", "Request", "Setting", "User", "utcnow",
]
