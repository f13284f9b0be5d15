"""identity: groups, base access lists, directory groups on the user row

Revision ID: 0002_identity
Revises: 0002_firewall
Create Date: 2026-11-30 22:30:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0002_identity'
down_revision = '0002_firewall'
branch_labels = None
depends_on = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mariadb", "mysql")


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('directory_groups', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('groups_read_at', TS, nullable=True))
    op.create_table('user_groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('description', sa.String(length=255), nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'name')
    )
    op.create_table('user_group_members',
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['user_groups.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('group_id', 'user_id')
    )
    with op.batch_alter_table('user_group_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_group_members_user_id'), ['user_id'], unique=False)
    op.create_table('base_access',
    sa.Column('machine_id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['user_groups.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['machine_id'], ['machines.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('machine_id', 'group_id')
    )
    with op.batch_alter_table('base_access', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_base_access_group_id'), ['group_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('base_access', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_base_access_group_id'))
    op.drop_table('base_access')
    with op.batch_alter_table('user_group_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_group_members_user_id'))
    op.drop_table('user_group_members')
    op.drop_table('user_groups')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('groups_read_at')
        batch_op.drop_column('directory_groups')
