"""Database access: models, engine/session factory and migrations."""

from ravada.db.models import (
    ApiToken,
    Backend,
    Base,
    BaseAccess,
    ConsoleSession,
    FirewallRule,
    Group,
    GroupMember,
    Iso,
    LoginAttempt,
    Machine,
    RecoveryCode,
    Request,
    Setting,
    User,
    utcnow,
)
from ravada.db.session import Database

__all__ = [
    "ApiToken", "Backend", "Base", "BaseAccess", "ConsoleSession", "Database", "FirewallRule",
    "Group", "GroupMember", "Iso", "LoginAttempt",
    "Machine", "RecoveryCode", "Request", "Setting", "User", "utcnow",
]
