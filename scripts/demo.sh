#!/usr/bin/env bash
# scripts/demo.sh - see rowferry survive an interruption, in about a minute.
#
#   bash scripts/demo.sh                 # or: DATABASE_URL=postgres://... bash scripts/demo.sh
#   DATABASE_URL=mysql://root@127.0.0.1:3306/test bash scripts/demo.sh   # MariaDB/MySQL
#
# 1. finds a PostgreSQL: $DATABASE_URL if set; else the local server at
#    127.0.0.1:5432 if it is up and lets postgres in; else a throwaway
#    cluster from the system PostgreSQL binaries under target/demo-pg on
#    port 55432 (installing the postgresql package first if needed and root);
# 2. builds rowferry (release) and loads 1,000,000 rows into
#    rowferry_demo.orders (fixtures/orders_pg.sql; orders_copy is empty);
# 3. copies orders -> orders_copy with a rate limit and interrupts it after
#    ~3 s with SIGINT, exactly what Ctrl-C does (expected exit 130:
#    interrupted, checkpoint saved), and shows the checkpoint;
# 4. reruns the same command without --restart: it resumes where it stopped;
# 5. proves both tables are identical (row count and an md5 over every row);
# 6. the blue-green step: copies orders into orders_v2 with --dual-write
#    while a writer keeps inserting, updating and deleting orders, then
#    proves with `rowferry verify` that both hold the same rows, and removes
#    the sync triggers.
# 7. (PostgreSQL on the local server, as root) throttling on a replica:
#    scripts/replicas.sh starts a streaming replica on port 5433; with its
#    replay paused, a copy run with --replica holds every chunk and says
#    why; once replay resumes, it finishes.
#
# Idempotent: each run reloads the demo schema and starts the copy over.
# Environment: DATABASE_URL, ROWS (default 1000000), KEEP=1 leaves the
# throwaway cluster running afterwards.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

SCHEMA=rowferry_demo
ROWS=${ROWS:-1000000}
CKPT=target/demo-copy.checkpoint
BIN=target/release/rowferry
DEMO_PORT=55432
INTERRUPT_AFTER=3

say() { printf '\n==> %s\n' "$*"; }
die() {
    printf '\ndemo.sh: ERROR: %s\n' "$*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [[ $(id -u) -eq 0 ]]; }
# Never print a password (DESIGN.md rule 5 applies to our scripts too).
redact() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }

apt_install() {
    is_root && have apt-get || return 1
    say "installing $* with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 LC_ALL=C.UTF-8 apt-get install -y -q "$@" >/dev/null
}

pg_bindir() {
    # shellcheck disable=SC2012
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

# ------------------------------------------------------ throwaway cluster
PG_STARTED=0
PGDIR=""
PG_BINDIR=""
PG_DATA=""

# Run a PostgreSQL server binary as the cluster owner: "postgres" when we are
# root (initdb refuses root), else ourselves. cd / first: postgres may not be
# allowed into the current directory.
as_pg() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

start_throwaway_cluster() {
    local bindir version
    bindir=$(pg_bindir)
    if [[ -z $bindir || ! -x $bindir/initdb ]]; then
        apt_install postgresql ||
            die "no PostgreSQL found. Set DATABASE_URL, start a server on 127.0.0.1:5432 (bash scripts/services.sh), or install PostgreSQL (sudo apt-get install postgresql)"
        bindir=$(pg_bindir)
        [[ -x $bindir/initdb ]] || die "installed postgresql but found no initdb under /usr/lib/postgresql"
    fi
    version=$(basename "$(dirname "$bindir")")

    PGDIR=$ROOT/target/demo-pg
    mkdir -p "$PGDIR"
    if is_root; then
        # initdb refuses to run as root: the cluster belongs to "postgres".
        id postgres >/dev/null 2>&1 || die "running as root but there is no postgres user to own the demo cluster"
        chown postgres: "$PGDIR"
        if ! runuser -u postgres -- test -w "$PGDIR"; then
            # e.g. the repository lives under /root, which postgres cannot enter
            PGDIR=${TMPDIR:-/tmp}/rowferry-demo-pg
            mkdir -p "$PGDIR"
            chown postgres: "$PGDIR"
            chmod 700 "$PGDIR"
        fi
    fi
    local data=$PGDIR/data
    if [[ -f $data/PG_VERSION && $(cat "$data/PG_VERSION") != "${version%%.*}" ]]; then
        as_pg rm -rf "$data" # made by another PostgreSQL major version
    fi
    if [[ ! -f $data/PG_VERSION ]]; then
        say "creating a throwaway PostgreSQL $version cluster in $data (trust auth, port $DEMO_PORT)"
        as_pg "$bindir/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C \
            >"$PGDIR/initdb.log" 2>&1 || die "initdb failed; see $PGDIR/initdb.log"
    fi
    if as_pg "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        say "reusing the throwaway cluster already running in $data"
    else
        say "starting the throwaway cluster on 127.0.0.1:$DEMO_PORT"
        # TCP on loopback only; no Unix socket (paths under target/ can be too long).
        as_pg "$bindir/pg_ctl" -D "$data" -l "$PGDIR/server.log" -w -t 60 \
            -o "-p $DEMO_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=''" \
            start >/dev/null || die "the throwaway cluster did not start; see $PGDIR/server.log"
        PG_STARTED=1
    fi
    PG_BINDIR=$bindir
    PG_DATA=$data
    URL=postgres://postgres@127.0.0.1:$DEMO_PORT/postgres
}

COPY_PID=""
cleanup() {
    # A Ctrl-C reaches the copy too (same process group): let it save its
    # checkpoint before the server goes away.
    if [[ -n $COPY_PID ]]; then wait "$COPY_PID" 2>/dev/null || true; fi
    if [[ -n ${WRITER_PID:-} ]]; then kill "$WRITER_PID" 2>/dev/null || true; fi
    if ((PG_STARTED)); then
        if [[ ${KEEP:-0} == 1 ]]; then
            local prefix=""
            if is_root; then prefix="runuser -u postgres -- "; fi
            printf '\n==> KEEP=1: the throwaway cluster keeps running; stop it with:\n    %s%s -D %s stop\n' \
                "$prefix" "$PG_BINDIR/pg_ctl" "$PG_DATA"
        else
            as_pg "$PG_BINDIR/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
        fi
    fi
}
trap cleanup EXIT

# ------------------------------------------------------ 1. a database
MYSQL=0
if [[ ${DATABASE_URL:-} == mysql://* || ${DATABASE_URL:-} == mariadb://* ]]; then
    # MariaDB/MySQL: mysql://user[:password]@host[:port]/db
    MYSQL=1
    URL=$DATABASE_URL
    [[ $URL =~ ^(mysql|mariadb)://([^:@/]+)(:([^@]*))?@([^:/]+)(:([0-9]+))?(/.*)?$ ]] ||
        die "DATABASE_URL must look like mysql://user:password@host:3306/db"
    MY_ARGS=(-h "${BASH_REMATCH[5]}" -P "${BASH_REMATCH[7]:-3306}" -u "${BASH_REMATCH[2]}")
    export MYSQL_PWD=${BASH_REMATCH[4]} # keeps the password off the command line
    have mariadb || apt_install mariadb-client || die "the mariadb client is needed for the demo (apt-get install mariadb-client)"
    say "using DATABASE_URL ($(redact "$URL"))"
    mariadb "${MY_ARGS[@]}" -e 'SELECT 1' >/dev/null || die "cannot connect to $(redact "$URL")"
else
    have psql || apt_install postgresql-client || die "psql is needed for the demo (apt-get install postgresql-client)"
fi

if ((MYSQL)); then
    :
elif [[ -n ${DATABASE_URL:-} ]]; then
    URL=$DATABASE_URL
    say "using DATABASE_URL ($(redact "$URL"))"
elif have pg_isready && pg_isready -q -h 127.0.0.1 -p 5432 -t 3 &&
    psql -w -X -q -d postgres://postgres@127.0.0.1:5432/test -c 'SELECT 1' >/dev/null 2>&1; then
    URL=postgres://postgres@127.0.0.1:5432/test
    say "using the local PostgreSQL at $URL"
else
    start_throwaway_cluster
fi
((MYSQL)) || psql -w -X -q -d "$URL" -c 'SELECT 1' >/dev/null || die "cannot connect to $(redact "$URL")"

# ------------------------------------------------------ 2. build and load
have cargo || die "cargo is needed to build rowferry (https://rustup.rs)"
say "building rowferry (cargo build --release)"
cargo build --release

say "loading $ROWS rows into $SCHEMA.orders; $SCHEMA.orders_copy is an empty twin"
if ((MYSQL)); then
    mariadb "${MY_ARGS[@]}" -e "CREATE DATABASE IF NOT EXISTS $SCHEMA"
    { echo "SET @rows = $ROWS;"; cat fixtures/orders_mysql.sql; } | mariadb "${MY_ARGS[@]}" "$SCHEMA" >/dev/null
else
    psql -w -X -q -v ON_ERROR_STOP=1 -v schema="$SCHEMA" -v rows="$ROWS" -d "$URL" -f fixtures/orders_pg.sql
fi

COPY=("$BIN" copy --source "$URL" --table "$SCHEMA.orders" --target-table "$SCHEMA.orders_copy"
    --checkpoint "$CKPT")
SHOWN=("${COPY[@]}")
SHOWN[3]=$(redact "$URL")

# ------------------------------------------------------ 3. interrupted copy
say "copying at most 150000 rows/s; in ${INTERRUPT_AFTER}s we interrupt it with SIGINT, as Ctrl-C would:
    ${SHOWN[*]} --restart --max-rows-per-sec 150000"
# A background job of a script starts with SIGINT ignored; give it the default
# disposition back so it sees the interrupt exactly as Ctrl-C would deliver it.
RESET_SIGNALS=()
# shellcheck disable=SC2054 # the comma is part of the option value
if env --default-signal=INT true >/dev/null 2>&1; then RESET_SIGNALS=(env --default-signal=INT,QUIT); fi
"${RESET_SIGNALS[@]}" "${COPY[@]}" --restart --max-rows-per-sec 150000 &
COPY_PID=$!
sleep "$INTERRUPT_AFTER"
if kill -0 "$COPY_PID" 2>/dev/null; then kill -INT "$COPY_PID"; fi
rc=0
wait "$COPY_PID" || rc=$?
COPY_PID=""
case $rc in
130) say "exit code 130: interrupted, in-flight chunks committed, checkpoint saved in $CKPT" ;;
0) say "exit code 0: the copy finished before the interrupt arrived (nothing left to resume)" ;;
*) die "the interrupted copy exited with $rc (expected 130)" ;;
esac

say "what the checkpoint records (rowferry status --checkpoint $CKPT):"
"$BIN" status --checkpoint "$CKPT" || die "rowferry status failed"

# ------------------------------------------------------ 4. resume
say "running the same copy again without --restart: it resumes from the checkpoint.
    The rate limit is dropped too; throttle settings are not part of the job's
    fingerprint, so this is still the same job:
    ${SHOWN[*]}"
rc=0
"${COPY[@]}" || rc=$?
[[ $rc == 0 ]] || die "the resumed copy exited with $rc (expected 0)"

# ------------------------------------------------------ 5. proof
say "comparing the tables: row count and md5 over every row in key order"
check() {
    if ((MYSQL)); then
        mariadb "${MY_ARGS[@]}" -N -B -e "SET SESSION group_concat_max_len = 1073741824;
            SELECT CONCAT(COUNT(*), ' rows, md5 ', COALESCE(MD5(GROUP_CONCAT(
                JSON_ARRAY(id, customer_id, status, amount, created_at, note) ORDER BY id SEPARATOR ',')), '-'))
            FROM $SCHEMA.$1"
        return
    fi
    psql -w -X -A -t -q -v ON_ERROR_STOP=1 -d "$URL" -c \
        "SELECT count(*) || ' rows, md5 ' || coalesce(md5(string_agg(o::text, ',' ORDER BY id)), '-')
           FROM $SCHEMA.$1 AS o"
}
SRC=$(check orders)
DST=$(check orders_copy)
printf '    %-12s %s\n    %-12s %s\n' orders "$SRC" orders_copy "$DST"
[[ $SRC == "$DST" ]] || {
    say "DIFFERENT"
    exit 1
}
say "EQUAL"

# ------------------------------------------------------ 6. online copy
run_sql() {
    if ((MYSQL)); then
        mariadb "${MY_ARGS[@]}" -N -B -e "$1"
    else
        psql -w -X -A -t -q -v ON_ERROR_STOP=1 -d "$URL" -c "$1"
    fi
}
if ((MYSQL)); then
    run_sql "DROP TABLE IF EXISTS $SCHEMA.orders_v2; CREATE TABLE $SCHEMA.orders_v2 LIKE $SCHEMA.orders"
else
    run_sql "SET client_min_messages = warning; DROP TABLE IF EXISTS $SCHEMA.orders_v2;
             CREATE TABLE $SCHEMA.orders_v2 (LIKE $SCHEMA.orders INCLUDING ALL)"
fi
PAIR=(--source "$URL" --table "$SCHEMA.orders" --target-table "$SCHEMA.orders_v2")
SHOWN_PAIR=(--source "$(redact "$URL")" --table "$SCHEMA.orders" --target-table "$SCHEMA.orders_v2")
STOP_WRITER=$(mktemp -u)
# The application: one insert beyond the copied range, one update and one
# delete inside it, over and over, until told to stop.
writer() {
    local n=0 id
    while [[ ! -e $STOP_WRITER ]]; do
        n=$((n + 1))
        id=$(((RANDOM * 32768 + RANDOM) % ROWS + 1))
        run_sql "INSERT INTO $SCHEMA.orders (id, customer_id, status, amount, created_at, note)
                   VALUES ($((ROWS * 2 + n)), 7, 'new', 9.99, '2026-11-23 12:00:00.123456', 'written during the copy');
                 UPDATE $SCHEMA.orders SET status = 'changed', amount = amount + 1 WHERE id = $id;
                 DELETE FROM $SCHEMA.orders WHERE id = $((id + 3))" >/dev/null
    done
    echo "$n" >"$STOP_WRITER.count"
}
say "the blue-green step: a writer keeps inserting, updating and deleting in orders while
    rowferry copies it into orders_v2 with dual-write triggers:
    $BIN copy ${SHOWN_PAIR[*]} --dual-write"
writer &
WRITER_PID=$!
rc=0
"$BIN" copy "${PAIR[@]}" --dual-write --checkpoint target/demo-dual-write.checkpoint --restart || rc=$?
sleep 1
touch "$STOP_WRITER"
wait "$WRITER_PID" || die "the writer failed"
WRITER_PID=""
[[ $rc == 0 ]] || die "the dual-write copy exited with $rc (expected 0)"
say "the writer made $(cat "$STOP_WRITER.count") rounds of writes during the copy; now the proof:
    $BIN verify ${SHOWN_PAIR[*]}"
rm -f "$STOP_WRITER" "$STOP_WRITER.count"
rc=0
"$BIN" verify "${PAIR[@]}" || rc=$?
[[ $rc == 0 ]] || die "verify exited with $rc (3: the tables differ)"
say "EQUAL: every write made during the copy is in orders_v2. The triggers would keep it
    that way until the cutover; the demo removes them:
    $BIN sync remove ${SHOWN_PAIR[*]}"
"$BIN" sync remove "${PAIR[@]}"
# ------------------------------------------------------ 7. replica lag
if ((!MYSQL)) && [[ $URL == postgres://postgres@127.0.0.1:5432/test ]] && is_root; then
    say "throttling on a replica: scripts/replicas.sh starts a streaming replica of this server
    on 127.0.0.1:5433; we pause its replay, so it falls behind, and copy again with
    --replica postgres://postgres@127.0.0.1:5433/test --max-lag 1s"
    bash scripts/replicas.sh start >/dev/null
    REPLICA=postgres://postgres@127.0.0.1:5433/test
    run_sql "TRUNCATE $SCHEMA.orders_copy"
    psql -w -X -q -d "$REPLICA" -c "SELECT pg_wal_replay_pause()" >/dev/null
    run_sql "CREATE TABLE IF NOT EXISTS $SCHEMA.nudge (x int); INSERT INTO $SCHEMA.nudge VALUES (1)"
    sleep 1.5
    LOG=$(mktemp)
    "$BIN" copy --source "$URL" --table "$SCHEMA.orders" --target-table "$SCHEMA.orders_copy" \
        --checkpoint target/demo-replica.checkpoint --restart --replica "$REPLICA" --max-lag 1s \
        --progress json 2>"$LOG" &
    COPY_PID=$!
    sleep 3
    say "3 s later, progress says (no chunk has started):"
    grep '^{' "$LOG" | tail -n 1
    say "resuming replay on the replica: the copy goes on"
    psql -w -X -q -d "$REPLICA" -c "SELECT pg_wal_replay_resume()" >/dev/null
    rc=0
    wait "$COPY_PID" || rc=$?
    grep -v '^{' "$LOG" | tail -n 1
    rm -f "$LOG"
    [[ $rc == 0 ]] || die "the copy behind the replica exited with $rc"
fi

if ((MYSQL)); then
    printf '    (the demo tables stay in database %s; remove them with DROP DATABASE %s)\n' "$SCHEMA" "$SCHEMA"
else
    printf '    (the demo tables stay in schema %s; remove them with DROP SCHEMA %s CASCADE)\n' "$SCHEMA" "$SCHEMA"
fi
