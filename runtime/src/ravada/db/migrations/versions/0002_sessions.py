"""sessions: users.session_version (revocable sessions), per-account login index

Revision ID: 0002_sessions
Revises: 0002_classroom
"""

import sqlalchemy as sa
from alembic import op

revision = '0002_sessions'
down_revision = '0002_classroom'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), nullable=False,
                                      server_default='0'))
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_login_attempts_username_at', ['username', 'at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_login_attempts_username_at')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('session_version')
