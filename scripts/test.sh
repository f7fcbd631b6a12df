#!/usr/bin/env bash
# scripts/test.sh - the full check the README and CI run:
#   services (databases up) -> rustfmt -> clippy (warnings are errors) -> tests.
#
# Integration tests talk to real servers and fail (never skip) when one is
# unreachable, so the databases are brought up first (scripts/services.sh).
# They read ROWFERRY_TEST_PG / ROWFERRY_TEST_MYSQL; the defaults below are the
# servers every dev/CI machine runs (DESIGN.md, "Databases here").
# SQL Server tests run only when ROWFERRY_TEST_MSSQL is set (docker-compose.yml).
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

if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run"
    cargo nextest run --no-fail-fast
    # No doctests here (nextest skips them): the integration tests under
    # tests/ are the examples that run.
else
    step "cargo test (install cargo-nextest for faster, isolated runs)"
    cargo test --no-fail-fast
fi

step "all checks passed"
