"""Database access: models, engine/session factory and migrations."""

from ravada.db.models import (
    ApiToken,
    Backend,
    Base,
    ConsoleSession,
    FirewallRule,
    LoginAttempt,
    Machine,
    Request,
    Setting,
    User,
    utcnow,
)
from ravada.db.session import Database

__all__ = [
    "ApiToken", "Backend", "Base", "ConsoleSession", "Database", "FirewallRule", "LoginAttempt",
    "Machine", "Request", "Setting", "User", "utcnow",
]
