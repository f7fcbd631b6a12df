#!/usr/bin/env bash
# scripts/bench.sh - how fast is a rowferry copy next to the fastest possible
# copy, a single INSERT ... SELECT inside the server?
#
#   bash scripts/bench.sh                       # ROWS=2000000 ROUNDS=2
#   ROWS=10000000 ROUNDS=3 KEEP=1 bash scripts/bench.sh
#
# Figures are printed, not asserted: they depend on the machine. Each round
# runs, in this order and each time into an empty (TRUNCATEd) orders_copy:
#   baseline    INSERT INTO orders_copy SELECT * FROM orders (one statement, psql)
#   two-halves  two such statements at once, one per half of the key range
#               (the ceiling for two writers on this server)
#   rowferry --workers 2
#   rowferry --workers 4
#   rowferry --workers 2 --defer-indexes, and --workers 4 (copy mode: the
#               two secondary indexes are dropped first and built again
#               online after the copy, inside the timing; afterwards they
#               must all be back and valid)
# Alternating the modes inside every round spreads cache warm-up and
# background noise (autovacuum, checkpoints) over all of them. rowferry runs
# under /usr/bin/time -v for wall time and peak resident memory; after every
# run the row counts of both tables must match, or the script fails.
#
#   bash scripts/bench.sh backfill [mysql]      # one UPDATE vs rowferry backfill
#   bash scripts/bench.sh mysql                 # the copy on MariaDB/MySQL, plus
#                                               # pt-online-schema-change if installable
#
#   bash scripts/bench.sh cross [mysql]         # copy --target into another PostgreSQL
#                                               # database vs a psql COPY pipe and pgcopydb
#                                               # (from MariaDB/MySQL: vs pgloader);
#                                               # scripts/bench_cross.sh says how
#   bash scripts/bench.sh length-check          # copy within one MariaDB database: the
#                                               # length check's cost (bench_length_check.sh)
#   bash scripts/bench.sh to-mysql              # copy --target PostgreSQL -> MariaDB vs a
#                                               # psql COPY | LOAD DATA LOCAL pipe
#
#   bash scripts/bench.sh dualwrite [postgres|mysql]
#       What an online copy costs the application. examples/writer.rs runs
#       WRITER_CONNECTIONS (4) connections of single-statement autocommit
#       traffic on orders (40% updates, 30% inserts, 15% point selects, 15%
#       deletes) and reports the latency of every operation. The target,
#       orders_new, is orders plus a column `tag` (a new shape). Each round:
#         writer-alone  the writer for WRITER_SECONDS (20) with nothing else
#         dual-write    the writer while `rowferry copy --dual-write` (default
#                       settings) fills an empty orders_new; the writer stops
#                       when the copy ends. Then, writes stopped, `rowferry
#                       verify` must exit 0 and the row counts must match, or
#                       the script fails; `rowferry sync remove`; TRUNCATE.
#         pt-osc        (MariaDB/MySQL, where installable) the writer while
#                       pt-online-schema-change --alter "ADD COLUMN tag
#                       varchar(100)" rebuilds orders (defaults otherwise);
#                       the column is dropped again afterwards.
#       Even rounds run the scenarios in reverse order. Printed: p50, p95,
#       p99 and max latency (ms), writer ops/s, failed writer operations by
#       kind, and the copy's wall time. A copy that fails is shown as FAILED
#       with the writer's figures until then, and the script fails. ROWS
#       defaults to 1000000 here.
#
#   bash scripts/bench.sh verify [postgres|mysql]
#       Verify throughput. After a rowferry copy of orders into orders_copy,
#       each round times (alternating the order) `rowferry verify --workers
#       2` and `--workers 4` against one statement that checksums both whole
#       tables inside the server (PostgreSQL: count(*) and
#       sum(hashtextextended(ROW(...)::text, 0)::numeric); MySQL: COUNT(*) and
#       SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(...)), 16), 16, 10) AS DECIMAL(20,0))))
#       and, on MySQL, CHECKSUM TABLE for reference. Every method must find
#       the tables equal. Printed: seconds, rows/s (source rows / wall time)
#       and the ratio to the single statement.
#
# Environment: ROWFERRY_BENCH_PG (default postgres://postgres@127.0.0.1:5432/test),
# ROWFERRY_BENCH_MYSQL (default mysql://root@127.0.0.1:3306/test),
# ROWS (2000000; 1000000 for dualwrite), ROUNDS (2), KEEP=1 keeps schema
# rowferry_bench afterwards; dualwrite also WRITER_SECONDS (20) and
# WRITER_CONNECTIONS (4).
set -euo pipefail
export LC_ALL=C # "." as the decimal point in $EPOCHREALTIME, awk and printf

cd "$(dirname "${BASH_SOURCE[0]}")/.."

MODE=copy
if [[ ${1:-} == throttle ]]; then
    # Writer latency and replica lag with and without throttling.
    exec bash scripts/bench_throttle.sh
fi
if [[ ${1:-} == to-mysql ]]; then
    # copy --target PostgreSQL -> MariaDB/MySQL vs a psql COPY | LOAD DATA pipe.
    exec bash scripts/bench_to_mysql.sh "${@:2}"
fi
if [[ ${1:-} == length-check ]]; then
    # What the length check of a copy within one MariaDB database costs.
    exec bash scripts/bench_length_check.sh "${@:2}"
fi
if [[ ${1:-} == cross ]]; then
    # copy --target into another PostgreSQL database vs a psql COPY pipe and pgcopydb.
    exec bash scripts/bench_cross.sh "${@:2}"
fi
case ${1:-} in
backfill | dualwrite | verify)
    MODE=$1
    shift
    ;;
esac
ENGINE=${1:-postgres}
case $ENGINE in
postgres) URL=${ROWFERRY_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test} ;;
mysql) URL=${ROWFERRY_BENCH_MYSQL:-mysql://root@127.0.0.1:3306/test} ;;
*)
    echo "usage: scripts/bench.sh [backfill|dualwrite|verify] [postgres|mysql] | throttle | cross | to-mysql | length-check" >&2
    exit 2
    ;;
esac
if [[ $MODE == dualwrite ]]; then ROWS=${ROWS:-1000000}; else ROWS=${ROWS:-2000000}; fi
ROUNDS=${ROUNDS:-2}
WRITER_SECONDS=${WRITER_SECONDS:-20}
WRITER_CONNECTIONS=${WRITER_CONNECTIONS:-4}
WRITER=target/release/examples/writer
WRITER_PID=
SCHEMA=rowferry_bench
CKPT=target/bench.ckpt
BIN=target/release/rowferry
WORK=$(mktemp -d)

say() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'bench.sh: ERROR: %s\n' "$*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }
redact() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }
secs_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "-";
    else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
if [[ $ENGINE == mysql ]]; then
    # mysql://user[:password]@host[:port]/db
    [[ $URL =~ ^mysql://([^:@/]+)(:([^@]*))?@([^:/]+)(:([0-9]+))?(/.*)?$ ]] ||
        die "ROWFERRY_BENCH_MYSQL must look like mysql://user:password@host:3306/db"
    MY_USER=${BASH_REMATCH[1]} MY_HOST=${BASH_REMATCH[4]} MY_PORT=${BASH_REMATCH[6]:-3306}
    MY_ARGS=(-h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER")
    export MYSQL_PWD=${BASH_REMATCH[3]} # keeps the password off the command line
    sql() { mariadb "${MY_ARGS[@]}" -N -B -e "$1"; }
    drop_schema() { sql "DROP DATABASE IF EXISTS $SCHEMA"; }
    load_fixture() {
        sql "CREATE DATABASE IF NOT EXISTS $SCHEMA"
        { echo "SET @rows = $ROWS;"; cat fixtures/orders_mysql.sql; } | mariadb "${MY_ARGS[@]}" "$SCHEMA" >/dev/null
    }
    server_version() { sql 'SELECT VERSION()'; }
else
    sql() { psql -w -X -A -t -q -F ' ' -v ON_ERROR_STOP=1 -d "$URL" -c "$1"; }
    drop_schema() { sql "DROP SCHEMA IF EXISTS $SCHEMA CASCADE"; }
    load_fixture() {
        psql -w -X -q -v ON_ERROR_STOP=1 -v schema="$SCHEMA" -v rows="$ROWS" -d "$URL" -f fixtures/orders_pg.sql
    }
    server_version() { echo "PostgreSQL $(sql 'SHOW server_version')"; }
fi

[[ $ROWS =~ ^[0-9]+$ && $ROWS -gt 0 ]] || die "ROWS must be a positive integer (got '$ROWS')"
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -gt 0 ]] || die "ROUNDS must be a positive integer (got '$ROUNDS')"
[[ $WRITER_SECONDS =~ ^[0-9]+$ && $WRITER_SECONDS -gt 0 ]] ||
    die "WRITER_SECONDS must be a positive integer (got '$WRITER_SECONDS')"
[[ $WRITER_CONNECTIONS =~ ^[0-9]+$ && $WRITER_CONNECTIONS -gt 0 ]] ||
    die "WRITER_CONNECTIONS must be a positive integer (got '$WRITER_CONNECTIONS')"

cleanup() {
    if [[ -n $WRITER_PID ]] && kill -0 "$WRITER_PID" 2>/dev/null; then
        kill "$WRITER_PID" 2>/dev/null || true
        wait "$WRITER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    if [[ ${KEEP:-0} == 1 ]]; then
        say "KEEP=1: schema $SCHEMA and $CKPT left in place"
    else
        drop_schema >/dev/null 2>&1 || true
        rm -f "$CKPT"
    fi
}
trap cleanup EXIT

# ------------------------------------------------------------------ tools
if [[ ! -x /usr/bin/time ]]; then
    # GNU time (not the shell keyword) reports the peak resident set size.
    if [[ $(id -u) -ne 0 ]] || ! have apt-get; then
        die "/usr/bin/time is missing; install it: sudo apt-get install time"
    fi
    say "installing GNU time (apt-get install time)"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null
fi
if [[ $ENGINE == mysql ]]; then
    have mariadb || die "the mariadb client is needed (apt-get install mariadb-client)"
else
    have psql || die "psql is needed (apt-get install postgresql-client)"
fi
have cargo || die "cargo is needed to build rowferry (https://rustup.rs)"
if [[ $MODE == dualwrite || $MODE == verify ]] && ! have jq; then
    # The writer's and rowferry's JSON lines are read with jq.
    if [[ $(id -u) -ne 0 ]] || ! have apt-get; then
        die "jq is needed for the $MODE mode; install it: sudo apt-get install jq"
    fi
    say "installing jq (apt-get install jq)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q jq >/dev/null
fi
sql 'SELECT 1' >/dev/null || die "cannot connect to $(redact "$URL") (set ROWFERRY_BENCH_PG / ROWFERRY_BENCH_MYSQL, or run scripts/services.sh)"

say "building rowferry (cargo build --release)"
cargo build --release

if [[ $MODE == dualwrite ]]; then
    say "building the writer (cargo build --release --example writer)"
    cargo build --release --example writer
fi

if [[ $MODE == copy || $MODE == backfill ]]; then
    say "in-process parts (criterion: chunk sizing, ledger, checkpoint fsync, SQL generation)"
    cargo bench --bench inprocess -- --warm-up-time 1 --measurement-time 2 2>/dev/null |
        awk '/^[a-z_0-9]+ *time:/ { print "    " $0 } /^[a-z_0-9]+$/ { name = $1 } /^ +time:/ { print "    " name $0 }'
fi

say "loading $ROWS rows into $SCHEMA.orders (fixtures/orders_$([[ $ENGINE == mysql ]] && echo mysql || echo pg).sql)"
t0=$EPOCHREALTIME
load_fixture
say "loaded in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"

# pt-online-schema-change, the reference online copier on MySQL, where it can
# be had (Debian's percona-toolkit).
PT_OSC=0
if [[ $ENGINE == mysql && $MODE != verify ]]; then
    if ! have pt-online-schema-change && [[ $(id -u) -eq 0 ]] && have apt-get; then
        say "installing percona-toolkit (apt-get) for the pt-online-schema-change comparison"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q percona-toolkit >/dev/null 2>&1 || true
    fi
    if have pt-online-schema-change; then PT_OSC=1; else say "pt-online-schema-change unavailable: not compared"; fi
fi

# ------------------------------------------------------------------ runs
RESULTS=$WORK/results # lines: mode round seconds rss_kb ("-" when not measured)

truncate_copy() { sql "TRUNCATE $SCHEMA.orders_copy" >/dev/null; }

check_counts() {
    local counts src dst
    counts=$(sql "SELECT (SELECT count(*) FROM $SCHEMA.orders), (SELECT count(*) FROM $SCHEMA.orders_copy)")
    read -r src dst <<<"$counts"
    [[ $src == "$dst" ]] || die "$1: orders has $src rows but orders_copy has $dst"
}

# backfill mode: every run fills orders.flag from NULL; between runs it is
# reset (and, on PostgreSQL, the table vacuumed) outside the timing.
BACKFILL_SET="flag = (amount > 100)"
reset_flag() {
    sql "UPDATE $SCHEMA.orders SET flag = NULL" >/dev/null
    if [[ $ENGINE == postgres ]]; then sql "VACUUM $SCHEMA.orders" >/dev/null; fi
}
check_flag() {
    local left
    left=$(sql "SELECT count(*) FROM $SCHEMA.orders WHERE flag IS NULL")
    [[ $left == 0 ]] || die "$1: $left rows still have flag NULL"
}
prepare_run() { if [[ $MODE == backfill ]]; then reset_flag; else truncate_copy; fi; }
check_run() { if [[ $MODE == backfill ]]; then check_flag "$1"; else check_counts "$1"; fi; }

run_baseline() {
    local round=$1 t0 secs
    prepare_run
    t0=$EPOCHREALTIME
    if [[ $MODE == backfill ]]; then
        sql "UPDATE $SCHEMA.orders SET $BACKFILL_SET" >/dev/null
    else
        sql "INSERT INTO $SCHEMA.orders_copy SELECT * FROM $SCHEMA.orders" >/dev/null
    fi
    secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
    check_run "baseline"
    echo "baseline $round $secs -" >>"$RESULTS"
    say "round $round  baseline      ${secs}s"
}

# What two writers can reach on this server at all: two INSERT ... SELECT
# statements over the two halves of the key range, at the same time. No
# chunked copier with two workers can beat it; rowferry's gap to it is the
# cost of chunking, checkpoints and throttling.
run_two_halves() {
    local round=$1 t0 secs mid
    truncate_copy
    mid=$(sql "SELECT id FROM $SCHEMA.orders ORDER BY id LIMIT 1 OFFSET $((ROWS / 2))")
    t0=$EPOCHREALTIME
    sql "INSERT INTO $SCHEMA.orders_copy SELECT * FROM $SCHEMA.orders WHERE id <= $mid" >/dev/null &
    sql "INSERT INTO $SCHEMA.orders_copy SELECT * FROM $SCHEMA.orders WHERE id > $mid" >/dev/null
    wait
    secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
    check_counts "two-halves"
    echo "two-halves $round $secs -" >>"$RESULTS"
    say "round $round  two-halves    ${secs}s"
}

# pt-osc rebuilds orders itself (a no-op ALTER copies every row through
# its chunked INSERT ... SELECT, with its triggers installed).
run_pt_osc() {
    local round=$1 t0 secs dsn="h=$MY_HOST,P=$MY_PORT,u=$MY_USER,D=$SCHEMA,t=orders"
    [[ -n $MYSQL_PWD ]] && dsn+=",p=$MYSQL_PWD"
    t0=$EPOCHREALTIME
    if ! pt-online-schema-change --alter "ENGINE=InnoDB" --execute --recursion-method=none \
        --charset utf8mb4 "$dsn" >"$WORK/pt-osc.log" 2>&1; then
        sed "s/$MYSQL_PWD/***/g" "$WORK/pt-osc.log" >&2
        die "pt-online-schema-change failed"
    fi
    secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
    [[ $(sql "SELECT count(*) FROM $SCHEMA.orders") == "$ROWS" ]] || die "pt-osc changed the row count"
    echo "pt-osc $round $secs -" >>"$RESULTS"
    say "round $round  pt-osc        ${secs}s"
}

# Valid indexes of a table (the deferred run must leave as many on
# orders_copy as orders has).
valid_indexes() {
    if [[ $ENGINE == mysql ]]; then
        sql "SELECT COUNT(DISTINCT INDEX_NAME) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = '$SCHEMA' AND TABLE_NAME = '$1'"
    else
        sql "SELECT count(*) FROM pg_index WHERE indrelid = '$SCHEMA.$1'::regclass AND indisvalid"
    fi
}

run_rowferry() { # workers round [defer]
    local workers=$1 round=$2 mode="rowferry-w$1" rc=0 secs rss json_rows slowest job extra=()
    if [[ ${3:-} == defer ]]; then
        mode+="-defer"
        extra=(--defer-indexes)
    fi
    prepare_run
    if [[ $MODE == backfill ]]; then
        job=(backfill --source "$URL" --table "$SCHEMA.orders" --set "$BACKFILL_SET")
    else
        job=(copy --source "$URL" --table "$SCHEMA.orders" --target-table "$SCHEMA.orders_copy")
    fi
    /usr/bin/time -v -o "$WORK/time.txt" \
        "$BIN" "${job[@]}" --workers "$workers" "${extra[@]}" --restart --checkpoint "$CKPT" --progress none --json \
        >"$WORK/summary.json" 2>"$WORK/stderr.txt" || rc=$?
    if ((rc != 0)); then
        cat "$WORK/stderr.txt" >&2
        die "$mode exited with $rc"
    fi
    # "Elapsed (wall clock) time (h:mm:ss or m:ss): 0:03.21" -> seconds
    secs=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($NF, p, ":"); t = 0
                for (i = 1; i <= n; i++) t = t * 60 + p[i]; printf "%.3f", t }' "$WORK/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ { print $NF }' "$WORK/time.txt")
    [[ -n $secs && -n $rss ]] || die "could not read /usr/bin/time output: $(cat "$WORK/time.txt")"
    check_run "$mode"
    if ((${#extra[@]})); then
        local want got
        want=$(valid_indexes orders) got=$(valid_indexes orders_copy)
        [[ $want == "$got" ]] || die "$mode: orders_copy has $got valid indexes after the rebuild, orders has $want"
    fi
    # The longest chunk: how long one transaction held its row locks.
    slowest=$(grep -o '"slowest_chunk_s":[0-9.e+-]*' "$WORK/summary.json" | cut -d: -f2)
    echo "$mode ${slowest:-?}" >>"$WORK/slowest"
    if have jq; then
        json_rows=$(jq -r '.rows // empty' "$WORK/summary.json" 2>/dev/null || true)
        if [[ -n $json_rows && $json_rows != "$ROWS" ]]; then
            say "note: $mode's --json summary reports rows=$json_rows (table has $ROWS)"
        fi
    fi
    echo "$mode $round $secs $rss" >>"$RESULTS"
    say "round $round  $mode  ${secs}s  peak RSS $((rss / 1024)) MB  slowest chunk ${slowest:-?}s"
}

# ------------------------------------------------------------------ dualwrite mode
# What the application feels: examples/writer.rs alone, during rowferry copy
# --dual-write, and (MySQL) during pt-online-schema-change.
DW_RESULTS=$WORK/dualwrite # scenario round p50 p95 p99 max ops/s errors copy_s
WRITER_CAP=3600            # a writer left behind by a killed script stops by itself
if [[ $ENGINE == mysql ]]; then NEW_COLUMN="tag varchar(100) NULL"; else NEW_COLUMN="tag text"; fi
# The writer works in the table's own database, as an application would. (On
# MariaDB 10.11, a connection whose default database is another one keeps
# failing with ER_NO_SUCH_TABLE on the statements it prepared before triggers
# that write to a second table were created: a server quirk, not the cost of
# the copy.)
WRITER_URL=$URL
if [[ $ENGINE == mysql ]]; then WRITER_URL=$(sed -E "s#^(mysql://[^/]+)(/[^?]*)?#\1/$SCHEMA#" <<<"$URL"); fi

create_target() {
    if [[ $ENGINE == mysql ]]; then
        sql "DROP TABLE IF EXISTS $SCHEMA.orders_new; CREATE TABLE $SCHEMA.orders_new LIKE $SCHEMA.orders;
             ALTER TABLE $SCHEMA.orders_new ADD COLUMN $NEW_COLUMN" >/dev/null
    else
        sql "SET client_min_messages = warning; DROP TABLE IF EXISTS $SCHEMA.orders_new;
             CREATE TABLE $SCHEMA.orders_new (LIKE $SCHEMA.orders INCLUDING ALL);
             ALTER TABLE $SCHEMA.orders_new ADD COLUMN $NEW_COLUMN" >/dev/null
    fi
}

# Failed operations by kind ("deadlock=3,lock_timeout=1"), or 0.
writer_errors() {
    jq -r '[.errors | to_entries[] | select(.key != "total" and .value > 0) | "\(.key)=\(.value)"]
           | if length == 0 then "0" else join(",") end' "$1"
}
record_writer() { # scenario round writer.json copy_seconds
    local fields
    fields=$(jq -r '"\(.p50_ms) \(.p95_ms) \(.p99_ms) \(.max_ms) \(.ops_per_sec)"' "$3")
    echo "$1 $2 $fields $(writer_errors "$3") $4" >>"$DW_RESULTS"
    say "round $2  $(printf '%-12s' "$1")  p50 $(jq -r .p50_ms "$3") ms  p99 $(jq -r .p99_ms "$3") ms  max $(jq -r .max_ms "$3") ms  $(jq -r .ops_per_sec "$3") ops/s  errors $(writer_errors "$3")$([[ $4 != - ]] && echo "  copy ${4}s")"
}
show_writer_stderr() { if [[ -s $WORK/writer.err ]]; then sed 's/^/    /' "$WORK/writer.err" >&2; fi; }

start_writer() { # seed; the writer runs until stop_writer
    local waited=0 rc=0
    rm -f "$WORK/writer.stop" "$WORK/writer.ready"
    "$WRITER" --url "$WRITER_URL" --table "$SCHEMA.orders" --connections "$WRITER_CONNECTIONS" \
        --seconds "$WRITER_CAP" --stop-file "$WORK/writer.stop" --ready-file "$WORK/writer.ready" \
        --seed "$1" >"$WORK/writer.json" 2>"$WORK/writer.err" &
    WRITER_PID=$!
    until [[ -e $WORK/writer.ready ]]; do
        if ! kill -0 "$WRITER_PID" 2>/dev/null; then
            wait "$WRITER_PID" || rc=$?
            WRITER_PID=
            show_writer_stderr
            die "the writer exited with $rc before it was ready"
        fi
        ((++waited < 600)) || die "the writer was not ready after 30 s"
        sleep 0.05
    done
}
stop_writer() {
    local rc=0
    touch "$WORK/writer.stop"
    wait "$WRITER_PID" || rc=$?
    WRITER_PID=
    show_writer_stderr
    ((rc == 0)) || die "the writer exited with $rc"
    [[ -s $WORK/writer.json ]] || die "the writer printed no result"
}

run_writer_alone() {
    local round=$1 seed=$2 rc=0
    "$WRITER" --url "$WRITER_URL" --table "$SCHEMA.orders" --connections "$WRITER_CONNECTIONS" \
        --seconds "$WRITER_SECONDS" --seed "$seed" >"$WORK/writer.json" 2>"$WORK/writer.err" || rc=$?
    show_writer_stderr
    ((rc == 0)) || die "the writer exited with $rc"
    record_writer writer-alone "$round" "$WORK/writer.json" -
}

sync_remove() {
    "$BIN" sync remove --source "$URL" --table "$SCHEMA.orders" --target-table "$SCHEMA.orders_new" \
        >/dev/null 2>"$WORK/sync.err"
}

run_dual_write() {
    local round=$1 seed=$2 rc=0 t0 secs vsecs counts src dst
    start_writer "$seed"
    t0=$EPOCHREALTIME
    "$BIN" copy --source "$URL" --table "$SCHEMA.orders" --target-table "$SCHEMA.orders_new" \
        --dual-write --restart --checkpoint "$CKPT" --progress none --json \
        >"$WORK/copy.json" 2>"$WORK/copy.err" || rc=$?
    secs=$(secs_since "$t0")
    stop_writer
    if ((rc != 0)); then
        echo "dual-write $round $(jq -r '"\(.p50_ms) \(.p95_ms) \(.p99_ms) \(.max_ms) \(.ops_per_sec)"' "$WORK/writer.json") $(writer_errors "$WORK/writer.json") FAILED" >>"$DW_RESULTS"
        sed 's/^/    /' "$WORK/copy.err" >&2
        sync_remove || cat "$WORK/sync.err" >&2
        dw_report
        die "rowferry copy --dual-write exited with $rc after ${secs}s (round $round; the writer's latency until then is in the table above)"
    fi
    if ((${WRITER_CAP%.*} < ${secs%.*})); then say "note: the copy outlasted the writer's ${WRITER_CAP}s cap"; fi
    record_writer dual-write "$round" "$WORK/writer.json" "$secs"
    say "               copy: $(jq -r '"\(.rows) rows, \(.chunks) chunks, \(.retries) retries, slowest chunk \(.slowest_chunk_s)s"' "$WORK/copy.json")"
    # Writes stopped: both tables must now hold the same rows.
    t0=$EPOCHREALTIME
    rc=0
    "$BIN" verify --source "$URL" --table "$SCHEMA.orders" --target-table "$SCHEMA.orders_new" \
        --progress none --json >"$WORK/verify.json" 2>"$WORK/verify.err" || rc=$?
    vsecs=$(secs_since "$t0")
    if ((rc != 0)); then
        sed 's/^/    /' "$WORK/verify.err" >&2
        jq -c '{status, rows_compared, differing_ranges, differences: .differences[:10]}' "$WORK/verify.json" >&2 || true
        sync_remove || true
        die "rowferry verify after the dual-write copy exited with $rc (round $round): the tables differ"
    fi
    counts=$(sql "SELECT (SELECT count(*) FROM $SCHEMA.orders), (SELECT count(*) FROM $SCHEMA.orders_new)")
    read -r src dst <<<"$counts"
    [[ $src == "$dst" ]] || die "dual-write: orders has $src rows but orders_new has $dst"
    say "               verify: equal, $src rows in ${vsecs}s"
    sync_remove || {
        cat "$WORK/sync.err" >&2
        die "rowferry sync remove failed"
    }
    sql "TRUNCATE $SCHEMA.orders_new" >/dev/null
}

# pt-osc rebuilds orders with the new column (its own triggers, its chunked
# copy, then the swap); the column is dropped again, outside the timing.
run_dw_pt_osc() {
    local round=$1 seed=$2 rc=0 t0 secs dsn="h=$MY_HOST,P=$MY_PORT,u=$MY_USER,D=$SCHEMA,t=orders"
    if [[ -n $MYSQL_PWD ]]; then
        # An option file keeps the password off pt-osc's command line.
        (umask 077 && printf '[client]\npassword=%s\n' "$MYSQL_PWD" >"$WORK/pt.cnf")
        dsn+=",F=$WORK/pt.cnf"
    fi
    start_writer "$seed"
    t0=$EPOCHREALTIME
    pt-online-schema-change --alter "ADD COLUMN $NEW_COLUMN" --execute --recursion-method=none \
        --charset utf8mb4 "$dsn" >"$WORK/pt-osc.log" 2>&1 || rc=$?
    secs=$(secs_since "$t0")
    stop_writer
    if ((rc != 0)); then
        if [[ -n $MYSQL_PWD ]]; then sed "s/$MYSQL_PWD/***/g" "$WORK/pt-osc.log" >&2; else cat "$WORK/pt-osc.log" >&2; fi
        die "pt-online-schema-change exited with $rc"
    fi
    record_writer pt-osc "$round" "$WORK/writer.json" "$secs"
    sql "ALTER TABLE $SCHEMA.orders DROP COLUMN tag" >/dev/null
}

dw_report() {
    local scenario round p50 p95 p99 max ops errors copy col med
    echo
    printf 'rowferry dual-write benchmark: %s rows, writer %s connection(s), %s, %s CPU(s), %s\n' \
        "$ROWS" "$WRITER_CONNECTIONS" "$(redact "$URL")" "$(nproc)" "$(server_version)"
    printf '(latency of every writer operation in ms, failed ones included; copy s = wall time of\n'
    printf ' the rowferry copy or pt-osc run, during which the writer ran; writer-alone ran %ss;\n' "$WRITER_SECONDS"
    printf ' medians leave out FAILED runs)\n\n'
    printf '%-13s %5s %8s %8s %8s %9s %8s %-28s %8s\n' scenario round p50 p95 p99 max ops/s errors "copy s"
    while read -r scenario round p50 p95 p99 max ops errors copy; do
        printf '%-13s %5s %8s %8s %8s %9s %8s %-28s %8s\n' "$scenario" "$round" "$p50" "$p95" "$p99" "$max" "$ops" "$errors" "$copy"
    done <"$DW_RESULTS"
    echo
    printf '%-13s %5s %8s %8s %8s %9s %8s %-28s %8s\n' median "" p50 p95 p99 max ops/s "errors (all rounds)" "copy s"
    for scenario in writer-alone dual-write pt-osc; do
        grep -v ' FAILED$' "$DW_RESULTS" | grep -q "^$scenario " || continue
        med=()
        for col in 3 4 5 6 7; do
            med+=("$(awk -v s="$scenario" -v c="$col" '$1 == s && $9 != "FAILED" { print $c }' "$DW_RESULTS" | median)")
        done
        med[4]=$(printf '%.0f' "${med[4]}")
        printf '%-13s %5s %8s %8s %8s %9s %8s %-28s %8s\n' "$scenario" "" "${med[@]}" \
            "$(awk -v s="$scenario" '$1 == s && $9 != "FAILED" { n = split($8, e, ","); for (i = 1; i <= n; i++) { split(e[i], kv, "="); t += kv[2] } }
                  END { print t + 0 }' "$DW_RESULTS")" \
            "$(awk -v s="$scenario" '$1 == s && $9 ~ /^[0-9.]+$/ { print $9 }' "$DW_RESULTS" | median)"
    done
}

bench_dualwrite() {
    local round scenarios i
    create_target
    scenarios=(writer-alone dual-write)
    if ((PT_OSC)); then scenarios+=(pt-osc); fi
    say "$ROUNDS round(s) of: ${scenarios[*]} (reversed in even rounds); writer: $WRITER_CONNECTIONS connection(s)"
    for ((round = 1; round <= ROUNDS; round++)); do
        local order=("${scenarios[@]}")
        if ((round % 2 == 0)); then
            order=()
            for ((i = ${#scenarios[@]} - 1; i >= 0; i--)); do order+=("${scenarios[i]}"); done
        fi
        for i in "${!order[@]}"; do
            case ${order[i]} in
            writer-alone) run_writer_alone "$round" "$((round * 100 + i))" ;;
            dual-write) run_dual_write "$round" "$((round * 100 + i))" ;;
            pt-osc) run_dw_pt_osc "$round" "$((round * 100 + i))" ;;
            esac
        done
    done
    dw_report
}

# ------------------------------------------------------------------ verify mode
VR_RESULTS=$WORK/verify # method round seconds own_seconds

if [[ $ENGINE == mysql ]]; then
    table_checksum() { # one whole table: count, then the sum of 64-bit MD5 prefixes
        echo "SELECT COUNT(*) AS n, SUM(CAST(CONV(LEFT(MD5(CONCAT_WS('#', id, customer_id, status, amount,
              created_at, note, ISNULL(note))), 16), 16, 10) AS DECIMAL(20, 0))) AS h FROM $1"
    }
else
    table_checksum() {
        echo "SELECT count(*) AS n, sum(hashtextextended(ROW(id, customer_id, status, amount, created_at,
              note)::text, 0)::numeric) AS h FROM $1"
    }
fi
CHECKSUM_BOTH="SELECT s.n, s.h, d.n, d.h FROM ($(table_checksum "$SCHEMA.orders")) s
               CROSS JOIN ($(table_checksum "$SCHEMA.orders_copy")) d"

run_verify_method() { # method round
    local method=$1 round=$2 rc=0 t0 secs own=- out n1 h1 n2 h2 rows
    t0=$EPOCHREALTIME
    case $method in
    rowferry-w*)
        "$BIN" verify --source "$URL" --table "$SCHEMA.orders" --target-table "$SCHEMA.orders_copy" \
            --workers "${method#rowferry-w}" --progress none --json >"$WORK/verify.json" 2>"$WORK/verify.err" || rc=$?
        secs=$(secs_since "$t0")
        if ((rc != 0)); then
            sed 's/^/    /' "$WORK/verify.err" >&2
            die "$method exited with $rc"
        fi
        rows=$(jq -r .rows_compared "$WORK/verify.json")
        [[ $rows == "$ROWS" ]] || die "$method compared $rows rows, not $ROWS"
        own=$(jq -r .elapsed_s "$WORK/verify.json")
        ;;
    statement)
        out=$(sql "$CHECKSUM_BOTH")
        secs=$(secs_since "$t0")
        read -r n1 h1 n2 h2 <<<"$out"
        [[ $n1 == "$ROWS" && $n1 == "$n2" && $h1 == "$h2" ]] ||
            die "the single-statement checksums differ: orders $n1 rows $h1, orders_copy $n2 rows $h2"
        ;;
    checksum-table)
        out=$(sql "CHECKSUM TABLE $SCHEMA.orders, $SCHEMA.orders_copy")
        secs=$(secs_since "$t0")
        [[ $(awk '{ print $2 }' <<<"$out" | sort -u | wc -l) == 1 ]] || die "CHECKSUM TABLE differs: $out"
        ;;
    esac
    echo "$method $round $secs $own" >>"$VR_RESULTS"
    say "round $round  $(printf '%-14s' "$method") ${secs}s$([[ $own != - ]] && echo " (rowferry's own elapsed_s $own)")"
}

bench_verify() {
    local round rc=0 methods order i base method secs own
    say "copying orders into orders_copy (rowferry copy, default settings)"
    "$BIN" copy --source "$URL" --table "$SCHEMA.orders" --target-table "$SCHEMA.orders_copy" \
        --restart --checkpoint "$CKPT" --progress none >/dev/null 2>"$WORK/copy.err" || rc=$?
    if ((rc != 0)); then
        cat "$WORK/copy.err" >&2
        die "rowferry copy exited with $rc"
    fi
    check_counts "copy"
    methods=(rowferry-w2 rowferry-w4 statement)
    if [[ $ENGINE == mysql ]]; then methods+=(checksum-table); fi
    say "$ROUNDS round(s) of: ${methods[*]} (reversed in even rounds)"
    for ((round = 1; round <= ROUNDS; round++)); do
        order=("${methods[@]}")
        if ((round % 2 == 0)); then
            order=()
            for ((i = ${#methods[@]} - 1; i >= 0; i--)); do order+=("${methods[i]}"); done
        fi
        for method in "${order[@]}"; do run_verify_method "$method" "$round"; done
    done

    base=$(awk '$1 == "statement" { print $3 }' "$VR_RESULTS" | median)
    vrow() { # method round seconds own
        awk -v m="$1" -v r="$2" -v s="$3" -v own="$4" -v rows="$ROWS" -v base="$base" 'BEGIN {
            if (s <= 0) s = 0.001
            printf "%-15s %5s %9.2f %12.0f %14.2fx %9s\n", m, r, s, rows / s, base / s, own }'
    }
    echo
    printf 'rowferry verify benchmark: %s rows per table, %s, %s CPU(s), %s\n' \
        "$ROWS" "$(redact "$URL")" "$(nproc)" "$(server_version)"
    printf '(rows/s = source rows / wall time; every method reads both tables; "vs statement" =\n'
    printf ' rows/s over the median rows/s of the single checksum statement; own s = rowferry'"'"'s\n'
    printf ' elapsed_s, without process start and catalog reads)\n\n'
    printf '%-15s %5s %9s %12s %15s %9s\n' method round seconds rows/s "vs statement" "own s"
    while read -r method round secs own; do vrow "$method" "$round" "$secs" "$own"; done <"$VR_RESULTS"
    echo
    printf '%-15s %5s %9s %12s %15s %9s\n' median "" seconds rows/s "vs statement" "own s"
    for method in "${methods[@]}"; do
        secs=$(awk -v m="$method" '$1 == m { print $3 }' "$VR_RESULTS" | median)
        own=$(awk -v m="$method" '$1 == m && $4 != "-" { print $4 }' "$VR_RESULTS" | median)
        vrow "$method" "" "$secs" "$own"
    done
}

case $MODE in
dualwrite)
    bench_dualwrite
    exit 0
    ;;
verify)
    bench_verify
    exit 0
    ;;
esac

if [[ $MODE == backfill ]]; then
    sql "ALTER TABLE $SCHEMA.orders ADD COLUMN flag boolean NULL" >/dev/null
    PT_OSC=0
    say "$ROUNDS round(s) of: one UPDATE ... SET $BACKFILL_SET, rowferry backfill --workers 2, --workers 4"
else
    say "$ROUNDS round(s) of: baseline, two-halves, rowferry --workers 2, rowferry --workers 4, and both with --defer-indexes"
fi
for ((round = 1; round <= ROUNDS; round++)); do
    run_baseline "$round"
    if [[ $MODE == copy ]]; then run_two_halves "$round"; fi
    run_rowferry 2 "$round"
    run_rowferry 4 "$round"
    if [[ $MODE == copy ]]; then
        run_rowferry 2 "$round" defer
        run_rowferry 4 "$round" defer
    fi
    if ((PT_OSC)); then run_pt_osc "$round"; fi
done

# ------------------------------------------------------------------ report
BASE=$(awk '$1 == "baseline" { print $3 }' "$RESULTS" | median)

row() { # mode round seconds rss_kb
    awk -v mode="$1" -v round="$2" -v secs="$3" -v rss="$4" -v rows="$ROWS" -v base="$BASE" 'BEGIN {
        mb = (rss == "-") ? "-" : sprintf("%.0f", rss / 1024)
        if (secs <= 0) secs = 0.001
        if (base <= 0) base = 0.001
        printf "%-17s %5s %9.2f %12.0f %12.2fx %11s\n", mode, round, secs, rows / secs, base / secs, mb }'
}

echo
printf 'rowferry %s benchmark: %s rows, %s, %s CPU(s), %s\n' \
    "$MODE" "$ROWS" "$(redact "$URL")" "$(nproc)" "$(server_version)"
printf '(speedup: rows/s divided by the median baseline rows/s; baseline = one %s)\n\n' \
    "$([[ $MODE == backfill ]] && echo "UPDATE ... SET $BACKFILL_SET" || echo "INSERT ... SELECT")"
printf '%-17s %5s %9s %12s %13s %11s\n' mode round seconds rows/s speedup "peak RSS MB"
while read -r mode round secs rss; do
    row "$mode" "$round" "$secs" "$rss"
done <"$RESULTS"
echo
printf '%-17s %5s %9s %12s %13s %11s\n' median "" seconds rows/s speedup "peak RSS MB"
for mode in baseline $([[ $MODE == copy ]] && echo two-halves) rowferry-w2 rowferry-w4 $([[ $MODE == copy ]] && echo rowferry-w2-defer rowferry-w4-defer) $( ((PT_OSC)) && echo pt-osc); do
    secs=$(awk -v m="$mode" '$1 == m { print $3 }' "$RESULTS" | median)
    rss=$(awk -v m="$mode" '$1 == m && $4 != "-" { print $4 }' "$RESULTS" | median)
    row "$mode" "" "$secs" "$rss"
done
echo
awk '{ if ($2 + 0 > max[$1] + 0) max[$1] = $2 } END { for (m in max) printf "%s: slowest chunk %.3fs (longest lock hold of one transaction)\n", m, max[m] }' "$WORK/slowest" | sort
if ((PT_OSC)); then
    pt=$(awk '$1 == "pt-osc" { print $3 }' "$RESULTS" | median)
    for mode in rowferry-w2 rowferry-w4; do
        secs=$(awk -v m="$mode" '$1 == m { print $3 }' "$RESULTS" | median)
        awk -v m="$mode" -v s="$secs" -v p="$pt" 'BEGIN { printf "%s throughput over pt-online-schema-change: %.2fx\n", m, p / s }'
    done
fi
