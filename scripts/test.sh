#!/usr/bin/env bash
# scripts/test.sh - the full check the README and CI run:
#   services (databases up) -> rustfmt -> clippy (warnings are errors) -> tests.
#
# Integration tests talk to real servers and fail (never skip) when one is
# unreachable, so the databases are brought up first (scripts/services.sh).
# They read ROWFERRY_TEST_PG / ROWFERRY_TEST_MYSQL; the defaults below are the
# servers every dev/CI machine runs (DESIGN.md, "Databases here").
# SQL Server tests (tests/mssql.rs) are #[ignore]d: without a server they are
# reported as skipped, never as passed. With ROWFERRY_TEST_MSSQL set they run
# too (and fail if that server cannot be reached); see docker-compose.yml and
# the README's "SQL Server" section.
#
# Any failure stops the script with a non-zero exit status.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export ROWFERRY_TEST_PG=${ROWFERRY_TEST_PG:-postgres://postgres@127.0.0.1:5432/test}
export ROWFERRY_TEST_MYSQL=${ROWFERRY_TEST_MYSQL:-mysql://root@127.0.0.1:3306/test}

step() { printf '\n==> %s\n' "$*" >&2; }

step "databases"
bash scripts/services.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --all-targets -- -D warnings

if [ -n "${ROWFERRY_TEST_MSSQL:-}" ]; then
    mssql="SQL Server live tests: run against \$ROWFERRY_TEST_MSSQL (tests/mssql.rs)"
else
    mssql="SQL Server live tests: NOT RUN (set ROWFERRY_TEST_MSSQL to a SQL Server to run \
tests/mssql.rs; see README, \"SQL Server\"). They are reported as skipped, not as passed."
fi
printf '%s\n' "$mssql" >&2

if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run"
    cargo nextest run --no-fail-fast
    # No doctests here (nextest skips them): the integration tests under
    # tests/ are the examples that run.
    if [ -n "${ROWFERRY_TEST_MSSQL:-}" ]; then
        step "cargo nextest run: SQL Server (ROWFERRY_TEST_MSSQL is set)"
        cargo nextest run --no-fail-fast --run-ignored only -E 'binary(mssql)'
    fi
else
    step "cargo test (install cargo-nextest for faster, isolated runs)"
    cargo test --no-fail-fast
    if [ -n "${ROWFERRY_TEST_MSSQL:-}" ]; then
        step "cargo test: SQL Server (ROWFERRY_TEST_MSSQL is set)"
        cargo test --no-fail-fast --test mssql -- --ignored
    fi
fi

step "$mssql"
step "all checks passed"
