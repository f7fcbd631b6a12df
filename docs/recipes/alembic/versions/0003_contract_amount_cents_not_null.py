"""contract: orders.amount_cents is NOT NULL

rowferry's --then-not-null already made the column NOT NULL online in the
data step; this revision only records that in the version history, and
refuses to go on if it is not so. (A plain ALTER COLUMN ... SET NOT NULL
here would scan the whole table under an ACCESS EXCLUSIVE lock.)

Revision ID: 0003_contract
Revises: 0002_backfill
"""

from alembic import op

import rowferry_step

revision = "0003_contract"
down_revision = "0002_backfill"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_context().as_sql:
        op.execute("-- expects orders.amount_cents NOT NULL (set online by the rowferry data step)")
        return
    if not rowferry_step.column_is_not_null():
        raise RuntimeError(
            "orders.amount_cents is still nullable: the data step has not finished. Run "
            "`rowferry backfill ... --set 'amount_cents = round(amount * 100)' "
            "--then-not-null amount_cents` (or rerun `alembic upgrade head` with "
            "rowferry_data_step = flags or job), then upgrade again"
        )


def downgrade() -> None:
    # DROP NOT NULL is catalog-only; still, do not queue behind long
    # transactions.
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.alter_column(
        "orders", "amount_cents", nullable=True, schema=rowferry_step.settings().schema
    )
