"""nodes: hypervisor nodes, their heartbeats, base copies; machines.node_id, requests.node_id

Revision ID: 0004_nodes
Revises: 0003_console
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004_nodes"
down_revision = "0003_console"
branch_labels = None
depends_on = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("display_address", sa.String(255), nullable=False, server_default=""),
        sa.Column("cluster_address", sa.String(255), nullable=False, server_default=""),
        sa.Column("libvirt_uri", sa.String(255), nullable=False, server_default=""),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("draining", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("max_desktops", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("memory_mb", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("mem_total_mb", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("mem_free_mb", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("running", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("vcpus", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("version", sa.String(32), nullable=False, server_default=""),
        sa.Column("heartbeat_timeout", sa.Integer(), nullable=False, server_default="30"),
        sa.Column("heartbeat_at", TS, nullable=True),
    )
    op.create_table(
        "base_copies",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("machine_id", sa.Integer(),
                  sa.ForeignKey("machines.id", ondelete="CASCADE"), nullable=False),
        sa.Column("node_id", sa.Integer(), sa.ForeignKey("nodes.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("state", sa.String(16), nullable=False, server_default="copying"),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("seconds", sa.Float(), nullable=False, server_default="0"),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("machine_id", "node_id"),
    )
    with op.batch_alter_table("machines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("pinned_nodes", sa.JSON(), nullable=True))
        batch_op.create_index("ix_machines_node_id", ["node_id"])
        batch_op.create_foreign_key("fk_machines_node_id", "nodes", ["node_id"], ["id"],
                                    ondelete="SET NULL")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_column("node_id")
    with op.batch_alter_table("machines", schema=None) as batch_op:
        batch_op.drop_constraint("fk_machines_node_id", type_="foreignkey")
        batch_op.drop_index("ix_machines_node_id")
        batch_op.drop_column("pinned_nodes")
        batch_op.drop_column("node_id")
    op.drop_table("base_copies")
    op.drop_table("nodes")
