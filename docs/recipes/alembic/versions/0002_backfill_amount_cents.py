"""data step: fill orders.amount_cents with rowferry, then NOT NULL online

No DDL of Alembic's here: rowferry runs outside the migration's transaction
(rowferry_step.run_backfill() uses an autocommit block) in small key-ordered
chunks, and its --then-not-null makes the column NOT NULL without a long
lock (CHECK ... NOT VALID, VALIDATE, SET NOT NULL, drop the CHECK).

If rowferry fails or is killed, this revision fails, alembic_version stays
at 0001_expand, and the next `alembic upgrade head` reruns it: rowferry
resumes from its checkpoint.

With rowferry_data_step = external this revision does nothing: run rowferry
yourself between `alembic upgrade 0001_expand` and `alembic upgrade head`.

Revision ID: 0002_backfill
Revises: 0001_expand
"""

import rowferry_step

revision = "0002_backfill"
down_revision = "0001_expand"
branch_labels = None
depends_on = None


def upgrade() -> None:
    rowferry_step.run_backfill()


def downgrade() -> None:
    # The values stay (0001's downgrade drops the column); forget the
    # finished job so that a later upgrade backfills again.
    rowferry_step.forget_backfill()
