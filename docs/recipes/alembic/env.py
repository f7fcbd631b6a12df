"""Alembic environment for the rowferry recipe (PostgreSQL).

Two things differ from `alembic init`'s template:

* transaction_per_migration=True: each revision commits on its own. The
  expand revision's ALTER TABLE (and its ACCESS EXCLUSIVE lock) is committed
  before the data step starts, and a failed data step leaves alembic_version
  at the expand revision, so rerunning `alembic upgrade head` resumes there.
* The settings of the data step (rowferry_* in alembic.ini, or -x) are read
  once here and handed to the revisions through rowferry_step.settings().
"""

import os
import sys
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rowferry_step  # noqa: E402  (needs the path above)

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

settings = rowferry_step.configure(config, context.get_x_argument(as_dictionary=True))


def run_migrations_offline() -> None:
    """`alembic upgrade --sql`: print the DDL for review. The data step
    cannot run offline; revision 0002 prints the rowferry command instead."""
    context.configure(
        url=settings.sqlalchemy_url,
        literal_binds=True,
        version_table_schema=settings.schema,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(
        settings.sqlalchemy_url,
        poolclass=pool.NullPool,
        # Unqualified names in the revisions mean the recipe's schema.
        connect_args={"options": f"-csearch_path={settings.schema}"},
    )
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            version_table_schema=settings.schema,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
