#!/usr/bin/env bash
# scripts/bench_cross.sh - `rowferry copy --target` into ANOTHER PostgreSQL
# database, next to a plain COPY pipe and pgcopydb (or, from MariaDB/MySQL,
# next to pgloader). Run it as
#
#   bash scripts/bench.sh cross                 # PostgreSQL -> PostgreSQL, ROWS=2000000 ROUNDS=2
#   bash scripts/bench.sh cross mysql           # MariaDB/MySQL -> PostgreSQL
#   ROWS=500000 ROUNDS=3 INDEXES=0 bash scripts/bench.sh cross
#
# PostgreSQL -> PostgreSQL. Source: the orders fixture (fixtures/orders_pg.sql:
# bigint key, text, numeric, timestamptz with microseconds, NULLs and awkward
# text) in schema rowferry_bench of the database of ROWFERRY_BENCH_PG.
# Target: database TARGET_DB (rowferry_bench_target, dropped and created) on
# the same server, with an empty rowferry_bench.orders of the same definition
# (pg_dump --schema-only of the source table: the primary key and, unless
# INDEXES=0, the fixture's two secondary indexes on customer_id and
# created_at). The table has one name on both sides because pgcopydb copies
# a table into its namesake. Each round runs, in this order (reversed in
# even rounds), each time into the TRUNCATEd target table:
#   rowferry-w2      rowferry copy --target ... --workers 2: chunked, resumable,
#                    each chunk one target transaction; PostgreSQL -> PostgreSQL
#                    streams COPY (SELECT ...) TO STDOUT (FORMAT binary) into
#                    COPY ... FROM STDIN (FORMAT binary) after a DELETE of the
#                    chunk's key range
#   rowferry-w4      the same with --workers 4
#   rowferry-w2-rows --workers 2 --where 'true': the path for a target whose key
#                    range may hold other keys (rows read with SELECT, keys
#                    deleted one by one, rows written by COPY in text encoded
#                    with rayon)
#   pipe             psql -c "COPY (SELECT * ...) TO STDOUT (FORMAT binary)" |
#                    psql -c "COPY ... FROM STDIN (FORMAT binary)": one stream,
#                    one transaction, nothing to resume
#   pgcopydb         pgcopydb copy table-data --table-jobs 2 --filters (one
#                    [include-only-table]): one COPY for one table, then its
#                    VACUUM ANALYZE (inside its time)
#   pgcopydb-split   the same with --split-tables-larger-than a quarter of the
#                    table: 4 key-range COPYs run by the 2 table jobs
#
# MariaDB/MySQL -> PostgreSQL (`cross mysql`). Source: fixtures/orders_mysql.sql
# in database rowferry_bench of ROWFERRY_BENCH_MYSQL; target: the same
# columns in PostgreSQL types (bigint, varchar, numeric(12,2), timestamp(6))
# in TARGET_DB, with the same indexes. Rounds: rowferry-w2, rowferry-w4
# (across engines: SELECT in neutral text forms, one DELETE of the chunk's
# key range, COPY ... FROM STDIN in text) and
# pgloader (LOAD DATABASE ... WITH data only, workers = 2, concurrency = 1,
# INCLUDING ONLY TABLE NAMES MATCHING 'orders').
#
# pgcopydb and pgloader are installed with apt-get when missing (as root);
# without them their rows are skipped, and said so. After every run the
# target must hold ROWS rows and (CHECKSUM=1, the default) the same rows:
# count and sum(hashtextextended(row::text)) over the target table, equal to
# the source table's (PostgreSQL) or to every other run's (MySQL), outside
# the timing.
#
# Printed: every run and the medians: seconds, rows/s, the ratio to the
# reference tools (rows/s over their median rows/s), rowferry's peak RSS.
#
# Environment: ROWFERRY_BENCH_PG (postgres://postgres@127.0.0.1:5432/test),
# ROWFERRY_BENCH_MYSQL (mysql://root@127.0.0.1:3306/test), TARGET_DB
# (rowferry_bench_target), ROWS (2000000), ROUNDS (2), INDEXES (1), CHECKSUM
# (1), KEEP=1 keeps the source schema/database and the target database.
set -euo pipefail
export LC_ALL=C

cd "$(dirname "${BASH_SOURCE[0]}")/.."

ENGINE=${1:-postgres}
case $ENGINE in
postgres | mysql) ;;
*)
    echo "usage: scripts/bench.sh cross [postgres|mysql]" >&2
    exit 2
    ;;
esac
URL=${ROWFERRY_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}
MY_URL=${ROWFERRY_BENCH_MYSQL:-mysql://root@127.0.0.1:3306/test}
TARGET_DB=${TARGET_DB:-rowferry_bench_target}
ROWS=${ROWS:-2000000}
ROUNDS=${ROUNDS:-2}
INDEXES=${INDEXES:-1}
CHECKSUM=${CHECKSUM:-1}
SCHEMA=rowferry_bench
TABLE=$SCHEMA.orders
BIN=target/release/rowferry
WORK=$(mktemp -d)
CKPT=$WORK/cross.ckpt
RESULTS=$WORK/results # method round seconds rss_kb

say() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'bench_cross.sh: ERROR: %s\n' "$*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }
redact() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }
secs_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "-";
    else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

[[ $ROWS =~ ^[0-9]+$ && $ROWS -gt 0 ]] || die "ROWS must be a positive integer (got '$ROWS')"
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -gt 0 ]] || die "ROUNDS must be a positive integer (got '$ROUNDS')"
[[ $TARGET_DB =~ ^[a-z_][a-z0-9_]*$ ]] || die "TARGET_DB must be a plain lower-case name (got '$TARGET_DB')"
# The target: the same PostgreSQL server, another database.
[[ $URL =~ ^(postgres(ql)?://[^/?]+)(/[^?]*)?(\?.*)?$ ]] ||
    die "ROWFERRY_BENCH_PG must look like postgres://user@host:5432/db"
TARGET_URL="${BASH_REMATCH[1]}/$TARGET_DB${BASH_REMATCH[4]}"
if [[ $ENGINE == mysql ]]; then
    # mysql://user[:password]@host[:port]/db
    [[ $MY_URL =~ ^mysql://([^:@/]+)(:([^@]*))?@([^:/]+)(:([0-9]+))?(/.*)?$ ]] ||
        die "ROWFERRY_BENCH_MYSQL must look like mysql://user:password@host:3306/db"
    MY_ARGS=(-h "${BASH_REMATCH[4]}" -P "${BASH_REMATCH[6]:-3306}" -u "${BASH_REMATCH[1]}")
    # Keeps the password off the command line; unset when there is none
    # (pgloader reads an empty MYSQL_PWD as an empty password, and fails).
    if [[ -n ${BASH_REMATCH[3]} ]]; then export MYSQL_PWD=${BASH_REMATCH[3]}; else unset MYSQL_PWD; fi
    SOURCE_URL=$(sed -E "s#^(mysql://[^/]+)(/[^?]*)?#\1/$SCHEMA#" <<<"$MY_URL")
else
    SOURCE_URL=$URL
fi

sql() { psql -w -X -A -t -q -F ' ' -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
my() { mariadb "${MY_ARGS[@]}" -N -B -e "$1"; }

cleanup() {
    rm -rf "$WORK"
    if [[ ${KEEP:-0} == 1 ]]; then
        say "KEEP=1: the source's $SCHEMA and database $TARGET_DB left in place"
    else
        if [[ $ENGINE == mysql ]]; then
            my "DROP DATABASE IF EXISTS $SCHEMA" >/dev/null 2>&1 || true
        else
            sql "$URL" "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
        fi
        sql "$URL" "DROP DATABASE IF EXISTS $TARGET_DB WITH (FORCE)" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

# ------------------------------------------------------------------ tools
apt_install() { # package: installed when missing, as root with apt-get
    if [[ $(id -u) -ne 0 ]] || ! have apt-get; then return 1; fi
    say "installing $1 (apt-get install $1)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >"$WORK/apt.log" 2>&1
}
have psql || die "psql is needed (apt-get install postgresql-client)"
have pg_dump || die "pg_dump is needed (apt-get install postgresql-client)"
have cargo || die "cargo is needed to build rowferry (https://rustup.rs)"
if [[ ! -x /usr/bin/time ]]; then apt_install time || die "/usr/bin/time is missing: apt-get install time"; fi
have jq || apt_install jq || die "jq is needed: apt-get install jq"
TOOL=pgcopydb
if [[ $ENGINE == mysql ]]; then
    have mariadb || die "the mariadb client is needed (apt-get install mariadb-client)"
    TOOL=pgloader
fi
HAVE_TOOL=0
if have "$TOOL" || apt_install "$TOOL"; then
    HAVE_TOOL=1
else
    say "$TOOL is not installed and could not be (apt-get install $TOOL): its rows are skipped"
fi
sql "$URL" 'SELECT 1' >/dev/null || die "cannot connect to $(redact "$URL") (set ROWFERRY_BENCH_PG, or run scripts/services.sh)"
if [[ $ENGINE == mysql ]]; then
    my 'SELECT 1' >/dev/null || die "cannot connect to $(redact "$MY_URL") (set ROWFERRY_BENCH_MYSQL, or run scripts/services.sh)"
fi

say "building rowferry (cargo build --release)"
cargo build --release

# ------------------------------------------------------------------ data
t0=$EPOCHREALTIME
if [[ $ENGINE == mysql ]]; then
    say "loading $ROWS rows into $TABLE on $(redact "$MY_URL") (fixtures/orders_mysql.sql)"
    my "CREATE DATABASE IF NOT EXISTS $SCHEMA"
    { echo "SET @rows = $ROWS;"; cat fixtures/orders_mysql.sql; } | mariadb "${MY_ARGS[@]}" "$SCHEMA" >/dev/null
else
    say "loading $ROWS rows into $TABLE (fixtures/orders_pg.sql)"
    psql -w -X -q -v ON_ERROR_STOP=1 -v schema="$SCHEMA" -v rows="$ROWS" -d "$URL" -f fixtures/orders_pg.sql
fi
say "loaded in $(secs_since "$t0") s"

say "creating database $TARGET_DB with an empty $TABLE ($([[ $INDEXES == 1 ]] && echo "primary key and the two secondary indexes" || echo "primary key only"))"
sql "$URL" "DROP DATABASE IF EXISTS $TARGET_DB WITH (FORCE)" >/dev/null
sql "$URL" "CREATE DATABASE $TARGET_DB" >/dev/null
sql "$TARGET_URL" "CREATE SCHEMA $SCHEMA" >/dev/null
if [[ $ENGINE == mysql ]]; then
    sql "$TARGET_URL" "CREATE TABLE $TABLE (id bigint PRIMARY KEY, customer_id bigint NOT NULL,
        status varchar(16) NOT NULL, amount numeric(12,2) NOT NULL, created_at timestamp(6) NOT NULL,
        note varchar(200));
        CREATE INDEX orders_customer_id_idx ON $TABLE (customer_id);
        CREATE INDEX orders_created_at_idx ON $TABLE (created_at)" >/dev/null
else
    pg_dump -w --schema-only --no-owner --no-privileges -t "$TABLE" -d "$URL" |
        psql -w -X -q -v ON_ERROR_STOP=1 -d "$TARGET_URL" >/dev/null
fi
if [[ $INDEXES != 1 ]]; then
    sql "$TARGET_URL" "DROP INDEX $SCHEMA.orders_customer_id_idx, $SCHEMA.orders_created_at_idx" >/dev/null
fi
TARGET_INDEXES=$(sql "$TARGET_URL" "SELECT string_agg(indexrelid::regclass::text, ', ' ORDER BY 1) FROM pg_index WHERE indrelid = '$TABLE'::regclass")
if [[ $ENGINE == postgres ]]; then
    TABLE_MB=$(sql "$URL" "SELECT pg_relation_size('$TABLE') / 1048576")
    SPLIT_MB=$(((TABLE_MB + 3) / 4))
    ((SPLIT_MB > 0)) || SPLIT_MB=1
    printf '[include-only-table]\n%s\n' "$TABLE" >"$WORK/filters.ini"
else
    TABLE_MB=$(my "SELECT ROUND(DATA_LENGTH / 1048576) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$SCHEMA' AND TABLE_NAME = 'orders'")
    (
        umask 077
        cat >"$WORK/pgloader.load" <<EOF
LOAD DATABASE
  FROM $SOURCE_URL
  INTO $TARGET_URL
  WITH data only, workers = 2, concurrency = 1
  INCLUDING ONLY TABLE NAMES MATCHING 'orders'
;
EOF
    )
fi

# ------------------------------------------------------------------ runs
table_sum() { echo "SELECT count(*), coalesce(sum(hashtextextended(o::text, 0)), 0) FROM $TABLE o"; }
# PostgreSQL: the source's sum; MySQL: the first run's, which every other
# run (rowferry's and pgloader's alike) must match.
WANT_SUM=
if [[ $ENGINE == postgres && $CHECKSUM == 1 ]]; then WANT_SUM=$(sql "$URL" "$(table_sum)"); fi

check_target() { # method
    local n got
    n=$(sql "$TARGET_URL" "SELECT count(*) FROM $TABLE")
    [[ $n == "$ROWS" ]] || die "$1: the target has $n rows, the source $ROWS"
    if [[ $CHECKSUM == 1 ]]; then
        got=$(sql "$TARGET_URL" "$(table_sum)")
        if [[ -z $WANT_SUM ]]; then
            WANT_SUM=$got
            echo "$1" >"$WORK/sum_from"
        fi
        [[ $got == "$WANT_SUM" ]] || die "$1: target count/checksum $got, expected $WANT_SUM$([[ -s $WORK/sum_from ]] && echo " (as after $(cat "$WORK/sum_from"))")"
    fi
}

reset_target() {
    sql "$TARGET_URL" "TRUNCATE $TABLE" >/dev/null
    # Outside the timing: the previous run's dirty pages and WAL.
    sql "$TARGET_URL" "CHECKPOINT" >/dev/null
}

record() { # method round seconds rss_kb
    echo "$1 $2 $3 $4" >>"$RESULTS"
    say "round $2  $(printf '%-16s' "$1") ${3}s$([[ $4 != - ]] && echo "  peak RSS $(($4 / 1024)) MB")"
}

run_rowferry() { # method round workers [extra args...]
    local method=$1 round=$2 workers=$3 rc=0 secs rss path
    shift 3
    reset_target
    /usr/bin/time -v -o "$WORK/time.txt" \
        "$BIN" copy --source "$SOURCE_URL" --target "$TARGET_URL" --table "$TABLE" --target-table "$TABLE" \
        --workers "$workers" "$@" --restart --checkpoint "$CKPT" --progress none --json \
        >"$WORK/summary.json" 2>"$WORK/stderr.txt" || rc=$?
    if ((rc != 0)); then
        cat "$WORK/stderr.txt" >&2
        die "$method exited with $rc"
    fi
    secs=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($NF, p, ":"); t = 0
                for (i = 1; i <= n; i++) t = t * 60 + p[i]; printf "%.3f", t }' "$WORK/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ { print $NF }' "$WORK/time.txt")
    path=$(sed -n 's/^rowferry: copying with \([^:]*\):.*/\1/p' "$WORK/stderr.txt")
    echo "$method ${path:-?}" >>"$WORK/paths"
    [[ $(jq -r .rows "$WORK/summary.json") == "$ROWS" ]] ||
        die "$method: the summary reports $(jq -r .rows "$WORK/summary.json") rows, not $ROWS"
    check_target "$method"
    record "$method" "$round" "$secs" "$rss"
}

run_pipe() {
    local round=$1 t0 secs
    reset_target
    t0=$EPOCHREALTIME
    psql -w -X -q -v ON_ERROR_STOP=1 -d "$URL" -c "COPY (SELECT * FROM $TABLE) TO STDOUT (FORMAT binary)" |
        psql -w -X -q -v ON_ERROR_STOP=1 -d "$TARGET_URL" -c "COPY $TABLE FROM STDIN (FORMAT binary)"
    secs=$(secs_since "$t0")
    check_target pipe
    record pipe "$round" "$secs" -
}

run_tool() { # method round command...
    local method=$1 round=$2 t0 secs rc=0
    shift 2
    reset_target
    rm -rf "$WORK/pgcopydb"
    t0=$EPOCHREALTIME
    "$@" >"$WORK/tool.log" 2>&1 || rc=$?
    secs=$(secs_since "$t0")
    if ((rc != 0)); then
        tail -30 "$WORK/tool.log" >&2
        die "$method exited with $rc"
    fi
    check_target "$method"
    record "$method" "$round" "$secs" -
}

if [[ $ENGINE == mysql ]]; then
    METHODS=(rowferry-w2 rowferry-w4)
    REFS=()
    if ((HAVE_TOOL)); then
        METHODS+=(pgloader)
        REFS+=(pgloader)
    fi
else
    METHODS=(rowferry-w2 rowferry-w4 rowferry-w2-rows pipe)
    REFS=(pipe)
    if ((HAVE_TOOL)); then
        METHODS+=(pgcopydb pgcopydb-split)
        REFS+=(pgcopydb)
    fi
fi
say "$ROUNDS round(s) of: ${METHODS[*]} (reversed in even rounds)"
for ((round = 1; round <= ROUNDS; round++)); do
    order=("${METHODS[@]}")
    if ((round % 2 == 0)); then
        order=()
        for ((i = ${#METHODS[@]} - 1; i >= 0; i--)); do order+=("${METHODS[i]}"); done
    fi
    for method in "${order[@]}"; do
        case $method in
        rowferry-w2) run_rowferry "$method" "$round" 2 ;;
        rowferry-w4) run_rowferry "$method" "$round" 4 ;;
        rowferry-w2-rows) run_rowferry "$method" "$round" 2 --where true ;;
        pipe) run_pipe "$round" ;;
        pgcopydb)
            run_tool "$method" "$round" pgcopydb copy table-data --source "$URL" --target "$TARGET_URL" \
                --table-jobs 2 --filters "$WORK/filters.ini" --dir "$WORK/pgcopydb"
            ;;
        pgcopydb-split)
            run_tool "$method" "$round" pgcopydb copy table-data --source "$URL" --target "$TARGET_URL" \
                --table-jobs 2 --filters "$WORK/filters.ini" --dir "$WORK/pgcopydb" \
                --split-tables-larger-than "${SPLIT_MB}MB"
            ;;
        pgloader) run_tool "$method" "$round" pgloader "$WORK/pgloader.load" ;;
        esac
    done
done

# ------------------------------------------------------------------ report
med_secs() { awk -v m="$1" '$1 == m { print $3 }' "$RESULTS" | median; }
REF_SECS=()
for ref in "${REFS[@]}"; do REF_SECS+=("$(med_secs "$ref")"); done

row() { # method round seconds rss_kb
    local ratios=() i
    for i in "${!REFS[@]}"; do
        ratios+=("$(awk -v s="$3" -v r="${REF_SECS[i]}" 'BEGIN { if (s <= 0) s = 0.001; printf "%.2fx", r / s }')")
    done
    awk -v m="$1" -v r="$2" -v s="$3" -v rss="$4" -v rows="$ROWS" -v ratios="${ratios[*]}" 'BEGIN {
        if (s <= 0) s = 0.001
        mb = (rss == "-" || rss == "") ? "-" : sprintf("%.0f", rss / 1024)
        printf "%-17s %5s %9.2f %12.0f", m, r, s, rows / s
        n = split(ratios, x, " "); for (i = 1; i <= n; i++) printf " %13s", x[i]
        printf " %11s\n", mb }'
}
header() { # first column, round column
    local ref
    printf '%-17s %5s %9s %12s' "$1" "$2" seconds rows/s
    for ref in "${REFS[@]}"; do printf ' %13s' "vs $ref"; done
    printf ' %11s\n' "peak RSS MB"
}

echo
if [[ $ENGINE == mysql ]]; then
    printf 'rowferry cross-engine benchmark: %s rows, %s (%s) -> %s, %s CPU(s), PostgreSQL %s\n' \
        "$ROWS" "$(redact "$SOURCE_URL")" "$(my 'SELECT VERSION()')" "$(redact "$TARGET_URL")" "$(nproc)" \
        "$(sql "$URL" 'SHOW server_version')"
else
    printf 'rowferry cross-database benchmark: %s rows, %s -> database %s (same server), %s CPU(s), PostgreSQL %s\n' \
        "$ROWS" "$(redact "$URL")" "$TARGET_DB" "$(nproc)" "$(sql "$URL" 'SHOW server_version')"
fi
printf 'target %s: %s indexes (%s); source table %s MB; checksum after every run: %s\n' \
    "$TABLE" "$(awk -F', ' '{ print NF }' <<<"$TARGET_INDEXES")" "$TARGET_INDEXES" "$TABLE_MB" \
    "$([[ $CHECKSUM == 1 ]] && echo "yes, all equal ($WANT_SUM)" || echo "no (counts only)")"
awk '{ p[$1] = substr($0, length($1) + 2) } END { for (m in p) printf "%s path: %s\n", m, p[m] }' "$WORK/paths" | sort
if ((HAVE_TOOL)); then
    if [[ $ENGINE == mysql ]]; then
        printf 'pgloader: %s\n' "$(pgloader --version 2>&1 | head -1)"
    else
        printf 'pgcopydb %s; pgcopydb-split: --split-tables-larger-than %sMB\n' \
            "$(pgcopydb --version 2>&1 | sed -n 's/^pgcopydb version //p' | head -1)" "$SPLIT_MB"
    fi
fi
printf '(vs X: rows/s over the median rows/s of X)\n\n'
header method round
while read -r method round secs rss; do row "$method" "$round" "$secs" "$rss"; done <"$RESULTS"
echo
header median ""
for method in "${METHODS[@]}"; do
    rss=$(awk -v m="$method" '$1 == m && $4 != "-" { print $4 }' "$RESULTS" | median)
    row "$method" "" "$(med_secs "$method")" "$rss"
done
