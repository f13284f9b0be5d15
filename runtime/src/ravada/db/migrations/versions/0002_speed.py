"""index for the bases list (is_base, name)

The desktop page and GET /api/v1/bases select the bases ordered by name; without this
index MariaDB scans every machine and sorts (EXPLAIN: type ALL, filesort).

Revision ID: 0002_speed
Revises: 0001
"""

from alembic import op

revision = "0002_speed"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_machines_is_base_name", "machines", ["is_base", "name"])


def downgrade() -> None:
    op.drop_index("ix_machines_is_base_name", table_name="machines")
