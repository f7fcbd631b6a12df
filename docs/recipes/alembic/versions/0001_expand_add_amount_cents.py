"""expand: add the nullable column orders.amount_cents

Adding a nullable column without a default is a catalog-only change on
PostgreSQL (a brief ACCESS EXCLUSIVE lock, no table rewrite). It commits on
its own (transaction_per_migration) before the data step starts.

Revision ID: 0001_expand
Revises:
"""

import sqlalchemy as sa
from alembic import op

import rowferry_step

revision = "0001_expand"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Do not wait behind a long transaction on orders with every later
    # query on the table queued behind us: fail fast and rerun instead.
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "orders",
        sa.Column("amount_cents", sa.BigInteger(), nullable=True),
        schema=rowferry_step.settings().schema,
    )


def downgrade() -> None:
    # A data step given up half-way (alembic_version still here) leaves
    # rowferry's checkpoint behind; forget it with the column.
    rowferry_step.forget_backfill()
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("orders", "amount_cents", schema=rowferry_step.settings().schema)
