"""The data step of an Alembic migration, run by rowferry.

Revision 0002 calls run_backfill(); everything rowferry-specific is here so
the revisions stay short. The rules it enforces:

* The data step runs OUTSIDE any transaction of Alembic's: inside
  op.get_context().autocommit_block(), after the expand revision committed.
  A backfill inside the migration's transaction would run behind the
  uncommitted ALTER TABLE's ACCESS EXCLUSIVE lock (rowferry's own
  connections would wait on it; the application would too) and would make
  the whole table one transaction, which is what rowferry exists to avoid.
  check_no_transaction() asserts it before rowferry starts.
* rowferry's exit status is checked: anything but 0 raises, Alembic stops,
  and alembic_version stays at the expand revision.
* Resumable: rowferry's checkpoint lives in rowferry_state_dir, so the next
  `alembic upgrade head` reruns revision 0002 and rowferry continues from
  its checkpoint (each chunk is applied exactly once across crashes).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from alembic import op
from sqlalchemy import text
from sqlalchemy.engine import make_url

HERE = Path(__file__).resolve().parent
JOB_TEMPLATE = HERE / "jobs" / "backfill_amount_cents.toml"
MODES = ("flags", "job", "external")

# The seed scenario: orders.amount_cents = round(amount * 100), then NOT NULL.
TABLE = "orders"
SET = "amount_cents = round(amount * 100)"
COLUMN = "amount_cents"


@dataclass
class Settings:
    sqlalchemy_url: str
    schema: str
    mode: str
    rowferry_bin: str
    state_dir: Path
    extra_args: list[str] = field(default_factory=list)

    @property
    def rowferry_url(self) -> str:
        """The same database as a URL rowferry takes (postgres://...)."""
        url = make_url(self.sqlalchemy_url).set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    @property
    def table(self) -> str:
        return f"{self.schema}.{TABLE}"

    @property
    def checkpoint(self) -> Path:
        return self.state_dir / f"backfill-{self.schema}.{TABLE}.checkpoint"

    @property
    def job_file(self) -> Path:
        return self.state_dir / f"{self.schema}.{JOB_TEMPLATE.name}"


_settings: Settings | None = None


def configure(config, x: dict[str, str]) -> Settings:
    """Read the rowferry_* options (alembic.ini), overridden by -x KEY=VALUE
    (url, schema, data_step, rowferry_bin, state_dir, rowferry_args) and
    by ROWFERRY_BIN."""
    global _settings

    def opt(x_key: str, ini_key: str, default: str) -> str:
        if x_key in x:
            return x[x_key]
        return config.get_main_option(ini_key) or default

    mode = opt("data_step", "rowferry_data_step", "flags")
    if mode not in MODES:
        raise SystemExit(f"rowferry_data_step must be one of {', '.join(MODES)}, not {mode!r}")
    _settings = Settings(
        sqlalchemy_url=x.get("url") or config.get_main_option("sqlalchemy.url"),
        schema=opt("schema", "rowferry_schema", "public"),
        mode=mode,
        rowferry_bin=os.environ.get("ROWFERRY_BIN") or opt("rowferry_bin", "rowferry_bin", "rowferry"),
        state_dir=Path(opt("state_dir", "rowferry_state_dir", str(HERE / "rowferry-state"))),
        extra_args=shlex.split(opt("rowferry_args", "rowferry_args", "")),
    )
    return _settings


def settings() -> Settings:
    assert _settings is not None, "env.py calls rowferry_step.configure() first"
    return _settings


def backfill_argv(s: Settings) -> list[str]:
    """The flags variant, as you would type it."""
    return [
        s.rowferry_bin, "backfill",
        "--source", s.rowferry_url,
        "--table", s.table,
        "--set", SET,
        "--then-not-null", COLUMN,
        "--checkpoint", str(s.checkpoint),
        *s.extra_args,
    ]


def check_no_transaction() -> None:
    """Fail unless Alembic's connection is outside a transaction: in
    autocommit mode each statement is its own transaction, so the
    transaction started with this very statement."""
    own = op.get_bind().execute(
        text("SELECT xact_start = query_start FROM pg_stat_activity WHERE pid = pg_backend_pid()")
    ).scalar()
    if not own:
        raise RuntimeError(
            "the rowferry data step must not run inside the migration's transaction; "
            "call it inside op.get_context().autocommit_block()"
        )


def _run(argv: list[str], env: dict[str, str] | None = None) -> None:
    shown = " ".join(shlex.quote(a) for a in argv).replace(settings().rowferry_url, "$DATABASE_URL")
    print(f"rowferry data step: {shown}", flush=True)
    try:
        # stdout/stderr go straight to the terminal: rowferry's progress and
        # "resuming from checkpoint" lines show up in Alembic's output.
        done = subprocess.run(argv, env=env, check=False)
    except FileNotFoundError:
        raise RuntimeError(
            f"rowferry not found ({argv[0]}); set ROWFERRY_BIN or rowferry_bin in alembic.ini"
        ) from None
    if done.returncode != 0:
        how = f"exit status {done.returncode}" if done.returncode > 0 else f"signal {-done.returncode}"
        raise RuntimeError(
            f"rowferry failed ({how}); alembic_version stays at the expand revision. "
            "Fix the cause and rerun `alembic upgrade head`: the backfill resumes from "
            f"its checkpoint in {settings().state_dir}"
        )


def run_backfill() -> None:
    """Revision 0002's upgrade()."""
    s = settings()
    ctx = op.get_context()
    if ctx.as_sql:
        # `alembic upgrade --sql`: the data step is not SQL; say what to run.
        ctx.impl.static_output(
            "-- data step (not SQL): " + " ".join(shlex.quote(a) for a in backfill_argv(s))
            .replace(s.rowferry_url, "$DATABASE_URL")
        )
        return
    if s.mode == "external":
        # You ran rowferry between `alembic upgrade 0001_expand` and this;
        # revision 0003 refuses if it did not finish.
        return
    s.state_dir.mkdir(parents=True, exist_ok=True)
    with ctx.autocommit_block():
        check_no_transaction()
        if s.mode == "flags":
            _run(backfill_argv(s))
        else:
            # rowferry keeps the job's state beside the job file.
            shutil.copyfile(JOB_TEMPLATE, s.job_file)
            env = dict(os.environ, ROWFERRY_URL=s.rowferry_url, ROWFERRY_SCHEMA=s.schema)
            _run([s.rowferry_bin, "run", str(s.job_file)], env=env)


def forget_backfill() -> None:
    """Downgrade past the data step: forget rowferry's bookkeeping, so that a
    later upgrade backfills again instead of finding the job already done.
    (The job variant's `rowferry abort` also drops the per-chunk state table
    that an unfinished backfill leaves in the schema.)"""
    s = settings()
    if op.get_context().as_sql:
        return
    job_state = s.job_file.with_name(s.job_file.name + ".state")
    if s.mode == "job" and job_state.exists():
        env = dict(os.environ, ROWFERRY_URL=s.rowferry_url, ROWFERRY_SCHEMA=s.schema)
        with op.get_context().autocommit_block():
            _run([s.rowferry_bin, "abort", str(s.job_file)], env=env)
    s.job_file.unlink(missing_ok=True)
    s.checkpoint.unlink(missing_ok=True)


def column_is_not_null() -> bool:
    return bool(
        op.get_bind().execute(
            text(
                "SELECT a.attnotnull FROM pg_attribute a "
                "WHERE a.attrelid = to_regclass(:t) AND a.attname = :c AND NOT a.attisdropped"
            ),
            {"t": settings().table, "c": COLUMN},
        ).scalar()
    )
