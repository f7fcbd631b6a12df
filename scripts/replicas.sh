#!/usr/bin/env bash
# scripts/replicas.sh - real replicas for the replica tests and the demo.
#
#   bash scripts/replicas.sh [start]   build what is missing or broken, start
#                                      everything, check that rows replicate
#   bash scripts/replicas.sh stop      stop the three instances below (never
#                                      the main servers)
#   bash scripts/replicas.sh status    one line per instance; exit 0 when all
#                                      three are healthy, 3 otherwise
#   bash scripts/replicas.sh env       export lines for the replica URLs:
#                                      eval "$(bash scripts/replicas.sh env)"
#
# Instances (all local, all under $ROWFERRY_REPLICAS_DIR, by default
# /var/tmp/rowferry-replicas, which survives a reboot unlike /tmp):
#
#   pg/          PostgreSQL streaming replica of the main cluster
#                (127.0.0.1:5432), listening on 127.0.0.1:$PG_REPLICA_PORT
#                (5433). Built with `pg_basebackup -R`, no replication slot, so
#                a stopped replica can never fill the primary's disk (if it
#                falls too far behind it is simply rebuilt). Run by pg_ctl as
#                the postgres OS user; log in pg/postgresql.log.
#   my-primary/  MariaDB with a binary log (ROW format, server_id 2) on
#                127.0.0.1:$MY_PRIMARY_PORT (3307). The main MariaDB on 3306
#                has log_bin OFF and is never touched, so replication gets a
#                server of its own.
#   my-replica/  MariaDB replicating from my-primary with GTIDs (server_id 3)
#                on 127.0.0.1:$MY_REPLICA_PORT (3308).
#
# Logins are the same as on the main servers: PostgreSQL trusts 127.0.0.1
# (user postgres, database test); MariaDB's root has an empty password over
# TCP (and unix_socket auth for the OS root user). Database test exists on all
# three (on the MariaDB pair it is created on the primary and replicated).
#
# `start` is idempotent. When everything already runs and is healthy it only
# checks that (no writes; well under a second). Otherwise it starts what is
# stopped, rebuilds from scratch whatever cannot start or cannot replicate
# (a stale PostgreSQL replica whose WAL is gone, a half-built data dir, a
# MariaDB replica whose primary was rebuilt...; the MariaDB pair is always
# rebuilt together, because the replica's position refers to the primary's
# binary log), and finally proves replication end to end: a row inserted on
# each primary (scratch table rowferry_replica_probe, dropped again) must show
# up on its replica within ROWFERRY_REPLICAS_WAIT seconds (default 30).
# ROWFERRY_REPLICAS_REBUILD=1 forces a rebuild of everything.
#
# The only change ever made outside $ROWFERRY_REPLICAS_DIR: when the main
# PostgreSQL refuses replication connections from 127.0.0.1, the line
#   host replication all 127.0.0.1/32 trust
# is added to its pg_hba.conf (appended, or put just before the first existing
# replication rule so it actually wins; a backup of the original is kept next
# to it) and the configuration is reloaded. wal_level / max_wal_senders are
# only checked: changing them needs a restart of the main server, which this
# script will not do behind your back.
#
# Requirements: Debian-style packages (what scripts/services.sh installs), the
# main PostgreSQL up, root (start/stop). On failure it prints the relevant log
# tails and exits non-zero.
set -euo pipefail

BASE=${ROWFERRY_REPLICAS_DIR:-/var/tmp/rowferry-replicas}
WAIT_SECS=${ROWFERRY_REPLICAS_WAIT:-30}
REBUILD=${ROWFERRY_REPLICAS_REBUILD:-0}

PG_PRIMARY_HOST=127.0.0.1
PG_PRIMARY_PORT=${PG_PRIMARY_PORT:-5432}
PG_REPLICA_PORT=${PG_REPLICA_PORT:-5433}
PG_USER=postgres
PG_DB='test'
PG_DIR=$BASE/pg
PG_DATA=$PG_DIR/data
PG_LOG=$PG_DIR/postgresql.log
# Also the replica's cluster_name, hence its application_name on the primary.
PG_APP=rowferry_replica

MY_PRIMARY_PORT=${MY_PRIMARY_PORT:-3307}
MY_REPLICA_PORT=${MY_REPLICA_PORT:-3308}
MYP_DIR=$BASE/my-primary
MYR_DIR=$BASE/my-replica
# Replication account on the MariaDB primary (local test instance only).
MY_REPL_USER=rowferry_repl
MY_REPL_PASS=rowferry_repl

PROBE_TABLE=rowferry_replica_probe
# Written into an instance dir once it has been built completely; a dir
# without it is a leftover from an interrupted build and gets rebuilt.
BUILT=.rowferry-built

log() { printf '==> replicas: %s\n' "$*" >&2; }
warn() { printf '==> replicas: WARNING: %s\n' "$*" >&2; }
die() {
    printf 'replicas.sh: ERROR: %s\n' "$*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [[ $(id -u) -eq 0 ]]; }

# tail_logs FILE...: the last lines of each (existing) log, on stderr.
tail_logs() {
    local f
    for f in "$@"; do
        [[ -s $f ]] || continue
        printf -- '---- last lines of %s ----\n' "$f" >&2
        tail -n 25 "$f" >&2
    done
}

# fail MESSAGE LOG...: show the logs, then die with MESSAGE.
fail() {
    local msg=$1
    shift
    tail_logs "$@"
    die "$msg"
}

# wait_for SECS CHECK [ARGS...]: run CHECK five times a second until it
# succeeds (0). A CHECK returning 2 means "will never succeed": stop early.
wait_for() {
    local secs=$1 i rc
    shift
    for ((i = 0; i < secs * 5; i++)); do
        if "$@"; then return 0; else rc=$?; fi
        ((rc == 2)) && return 2
        sleep 0.2
    done
    "$@"
}

# Is somebody listening on 127.0.0.1:PORT (or on all addresses)?
port_in_use() {
    if have ss; then
        [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]
    else
        # shellcheck disable=SC2016 # $1 expands in the inner bash, on purpose
        timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" >/dev/null 2>&1
    fi
}

# check_port_free NAME PORT: before starting an instance of ours.
check_port_free() {
    if port_in_use "$2"; then
        ss -ltnp "sport = :$2" >&2 2>/dev/null || true
        die "port $2 (for $1) is already in use by another program; stop it or pick another port (PG_REPLICA_PORT, MY_PRIMARY_PORT, MY_REPLICA_PORT)"
    fi
}

# pid_alive PID WORD: PID runs (not a zombie) and its command line contains
# WORD (so that a pid recycled by an unrelated process does not count).
pid_alive() {
    local state
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    state=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z && $state != X ]] || return 1
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -F -- "$2" >/dev/null
}

# Refuse to rm -rf anything that is not a subdirectory of an absolute BASE.
safe_wipe() {
    [[ $BASE == /?* && $BASE != *..* && $1 == "$BASE"/?* ]] || die "refusing to delete '$1' (ROWFERRY_REPLICAS_DIR must be an absolute path)"
    rm -rf -- "$1"
}

# ---------------------------------------------------------------- PostgreSQL

PSQL=
PG_BIN=
PG_MAJOR=
PG_LOG_OFFSET=0

# Runs a PostgreSQL program as the postgres OS user, from a directory it can
# read (runuser keeps the caller's cwd).
as_postgres() { (cd / && runuser -u postgres -- "$@"); }

pg_primary_sql() {
    PGCONNECT_TIMEOUT=5 "$PSQL" -X -w -q -A -t -v ON_ERROR_STOP=1 \
        -h "$PG_PRIMARY_HOST" -p "$PG_PRIMARY_PORT" -U "$PG_USER" -d "$PG_DB" "$@"
}
pg_replica_sql() {
    PGCONNECT_TIMEOUT=5 "$PSQL" -X -w -q -A -t -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$PG_REPLICA_PORT" -U "$PG_USER" -d "$PG_DB" "$@"
}

# Finds psql, checks that the main cluster answers and picks the server
# binaries of the same major version (/usr/lib/postgresql/MAJOR/bin, the
# Debian layout scripts/services.sh relies on too). PG_BINDIR overrides.
pg_find_binaries() {
    if have psql; then
        PSQL=psql # Debian's pg_wrapper: fine for a client
    else
        PSQL=$(compgen -G '/usr/lib/postgresql/*/bin/psql' | sort -V | tail -n 1) ||
            die "psql not found; run scripts/services.sh first (or apt-get install -y postgresql-client)"
    fi
    local num
    num=$(pg_primary_sql -c 'SHOW server_version_num' 2>/dev/null) ||
        die "the main PostgreSQL at $PG_PRIMARY_HOST:$PG_PRIMARY_PORT does not answer (user $PG_USER, database $PG_DB); run: bash scripts/services.sh"
    PG_MAJOR=$((num / 10000))
    PG_BIN=${PG_BINDIR:-/usr/lib/postgresql/$PG_MAJOR/bin}
    local prog
    for prog in postgres pg_ctl pg_basebackup psql; do
        [[ -x $PG_BIN/$prog ]] || die "$PG_BIN/$prog is missing (the main server is PostgreSQL $PG_MAJOR; apt-get install -y postgresql-$PG_MAJOR)"
    done
    PSQL=$PG_BIN/psql
}

# wal_level and max_wal_senders need a restart of the main server to change:
# we only report them.
pg_check_primary_settings() {
    local wal_level senders
    IFS='|' read -r wal_level senders < <(pg_primary_sql -c \
        "SELECT current_setting('wal_level'), current_setting('max_wal_senders')") ||
        die "cannot read wal_level/max_wal_senders from the main PostgreSQL"
    if [[ $wal_level != replica && $wal_level != logical ]] || ((senders < 1)); then
        die "the main PostgreSQL has wal_level=$wal_level and max_wal_senders=$senders; streaming replication needs wal_level=replica (or logical) and max_wal_senders > 0 (3 or more: the replica uses one, pg_basebackup two while building).
  Set them in its postgresql.conf ($(pg_primary_sql -c 'SHOW config_file' 2>/dev/null || echo '?')) and restart it
  (pg_ctlcluster $PG_MAJOR main restart). This script does not restart the main server by itself."
    fi
}

# A real replication connection, what pg_basebackup and the walreceiver use.
# Prints the server's error message on failure.
pg_replication_login() {
    { PGCONNECT_TIMEOUT=5 "$PSQL" -X -w -q -A -t -d \
        "host=$PG_PRIMARY_HOST port=$PG_PRIMARY_PORT user=$PG_USER dbname=$PG_DB replication=true" \
        -c 'IDENTIFY_SYSTEM' >/dev/null; } 2>&1
}

# Make the main cluster accept replication connections from 127.0.0.1 (trust),
# touching pg_hba.conf only when that is actually missing.
pg_ensure_replication_hba() {
    local err hba line='host replication all 127.0.0.1/32 trust' tmp first
    err=$(pg_replication_login) && return 0
    case $err in
    *"no pg_hba.conf entry"* | *"authentication failed"* | *"no password supplied"*) ;;
    *) die "replication connections to the main PostgreSQL fail: $err" ;;
    esac
    is_root || die "the main PostgreSQL refuses replication connections from 127.0.0.1 and only root can fix its pg_hba.conf: $err"
    hba=$(pg_primary_sql -c 'SHOW hba_file') || die "cannot read hba_file from the main PostgreSQL"
    [[ -f $hba ]] || die "the main PostgreSQL's hba_file $hba is not a local file"
    if grep -Eq '^[[:space:]]*host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust[[:space:]]*(#.*)?$' "$hba"; then
        log "$hba already has '$line'; reloading the main PostgreSQL"
    else
        [[ -e $hba.before-rowferry-replicas ]] || cp -p "$hba" "$hba.before-rowferry-replicas"
        # First active rule whose database column names "replication": an
        # appended line would come after it and never be used.
        first=$(awk '!/^[[:space:]]*(#|$)/ && $1 ~ /^host/ && ("," $2 ",") ~ /,replication,/ { print NR; exit }' "$hba")
        tmp=$(mktemp)
        if [[ -n $first ]]; then
            log "adding '$line' to $hba (before line $first, its first replication rule; backup: $hba.before-rowferry-replicas)"
            awk -v n="$first" -v l="$line" 'NR == n { print "# added by rowferry scripts/replicas.sh: replication for the local test replica"; print l } { print }' "$hba" >"$tmp"
        else
            log "appending '$line' to $hba (backup: $hba.before-rowferry-replicas)"
            {
                cat "$hba"
                echo '# added by rowferry scripts/replicas.sh: replication for the local test replica'
                echo "$line"
            } >"$tmp"
        fi
        cat "$tmp" >"$hba" # keeps the file's owner and mode
        rm -f "$tmp"
    fi
    pg_primary_sql -c 'SELECT pg_reload_conf()' >/dev/null || die "SELECT pg_reload_conf() failed on the main PostgreSQL"
    local errors
    errors=$(pg_primary_sql -c "SELECT line_number || ': ' || error FROM pg_hba_file_rules WHERE error IS NOT NULL" 2>/dev/null || true)
    [[ -z $errors ]] || die "$hba has errors, the main PostgreSQL keeps its previous rules: $errors"
    # The postmaster reloads asynchronously.
    local i
    for ((i = 0; i < 25; i++)); do
        err=$(pg_replication_login) && return 0
        sleep 0.2
    done
    die "the main PostgreSQL still refuses replication connections after editing $hba: $err"
}

pg_pid() { head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null; }

# Is the replica's postmaster running? Like `pg_ctl status`, but a killed
# postmaster that nobody has reaped yet (a zombie) counts as stopped.
pg_running() {
    local pid
    pid=$(pg_pid) || return 1
    pid_alive "$pid" "$PG_DATA"
}

# A complete data dir from a previous build, of the primary's major version.
pg_built() {
    [[ -f $PG_DIR/$BUILT && -f $PG_DATA/standby.signal && -f $PG_DATA/PG_VERSION ]] &&
        [[ $(<"$PG_DATA/PG_VERSION") == "$PG_MAJOR" ]]
}

# 0: in recovery and streaming from the primary. 2: will not get there (the
# postmaster died, or its log since our start shows an unrecoverable error).
pg_healthy() {
    [[ $(pg_replica_sql -c "SELECT pg_is_in_recovery() || '|' || coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')" 2>/dev/null) == 'true|streaming' ]] &&
        return 0
    pg_running || return 2
    if [[ -f $PG_LOG ]] && tail -c +"$((PG_LOG_OFFSET + 1))" "$PG_LOG" |
        grep -E 'has already been removed|database system identifier differs|requested timeline .* is not a child|not a valid data directory|invalid checkpoint record' >/dev/null; then
        return 2
    fi
    return 1
}

# The replica's own configuration, regenerated on every start (the primary's
# postgresql.conf lives in /etc on Debian, so pg_basebackup brings none).
pg_write_conf() {
    local settings name value
    # A hot standby refuses to run with smaller max_* values than its primary;
    # the rest keeps it behaving like the primary (time zone, date style, ...).
    settings=$(pg_primary_sql -F $'\t' -c "SELECT name, setting FROM pg_settings
        WHERE name IN ('max_connections', 'max_worker_processes', 'max_wal_senders',
                       'max_prepared_transactions', 'max_locks_per_transaction',
                       'TimeZone', 'DateStyle', 'lc_messages', 'lc_monetary', 'lc_numeric',
                       'lc_time', 'default_text_search_config', 'log_timezone')
        ORDER BY name") || die "cannot read settings from the main PostgreSQL"
    {
        echo "# Written by rowferry scripts/replicas.sh on every start; edits are lost."
        echo "port = $PG_REPLICA_PORT"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$PG_DIR'"
        echo "cluster_name = '$PG_APP'"
        echo "hot_standby = on"
        echo "hot_standby_feedback = off"
        echo "shared_buffers = 32MB"
        echo "log_line_prefix = '%m [%p] '"
        echo "# copied from the primary"
        while IFS=$'\t' read -r name value; do
            printf "%s = '%s'\n" "$name" "${value//\'/\'\'}"
        done <<<"$settings"
    } >"$PG_DATA/postgresql.conf"
    cat >"$PG_DATA/pg_hba.conf" <<'EOF'
# Written by rowferry scripts/replicas.sh: the same trust setup as the main test server.
local   all           all                  trust
host    all           all   127.0.0.1/32   trust
host    all           all   ::1/128        trust
local   replication   all                  trust
host    replication   all   127.0.0.1/32   trust
EOF
    : >"$PG_DATA/pg_ident.conf"
    chown postgres:postgres "$PG_DATA/postgresql.conf" "$PG_DATA/pg_hba.conf" "$PG_DATA/pg_ident.conf"
    chmod 0600 "$PG_DATA/postgresql.conf" "$PG_DATA/pg_hba.conf" "$PG_DATA/pg_ident.conf"
}

pg_start() {
    check_port_free "the PostgreSQL replica" "$PG_REPLICA_PORT"
    PG_LOG_OFFSET=$(stat -c %s "$PG_LOG" 2>/dev/null || echo 0)
    log "starting the PostgreSQL replica on 127.0.0.1:$PG_REPLICA_PORT"
    # -w: wait until it accepts connections (a hot standby does once it has
    # reached a consistent state).
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$WAIT_SECS" \
        -o "-p $PG_REPLICA_PORT" start >/dev/null 2>&1 9>&-
}

pg_stop() {
    pg_running || return 0
    log "stopping the PostgreSQL replica (pid $(pg_pid))"
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null 2>&1 ||
        as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 30 stop >/dev/null 2>&1 ||
        ! pg_running || fail "could not stop the PostgreSQL replica" "$PG_LOG"
}

# Start an existing replica and wait until it streams. Returns non-zero when
# it cannot (the caller rebuilds it).
pg_bring_up() {
    if pg_running; then
        pg_healthy && return 0
        log "the PostgreSQL replica runs but does not stream; restarting it"
        pg_stop
    fi
    pg_write_conf
    # One retry: right after a crash the old backends may still hold the
    # shared memory for a moment.
    pg_start || { sleep 2 && pg_start; } || return 1
    wait_for "$WAIT_SECS" pg_healthy
}

# A fresh replica: pg_basebackup -R (writes primary_conninfo and
# standby.signal), streaming the WAL it needs (-X stream) through a temporary
# slot that disappears with the backup. No permanent slot.
pg_build() {
    log "building the PostgreSQL replica: pg_basebackup from $PG_PRIMARY_HOST:$PG_PRIMARY_PORT into $PG_DATA"
    pg_stop
    rm -f "$PG_DIR/$BUILT"
    [[ -d $PG_DATA ]] && safe_wipe "$PG_DATA"
    install -d -o postgres -g postgres -m 0755 "$PG_DIR"
    as_postgres "$PG_BIN/pg_basebackup" -w -R -X stream -c fast \
        -d "host=$PG_PRIMARY_HOST port=$PG_PRIMARY_PORT user=$PG_USER" \
        -D "$PG_DATA" >"$PG_DIR/basebackup.log" 2>&1 ||
        fail "pg_basebackup from the main PostgreSQL failed" "$PG_DIR/basebackup.log"
    pg_write_conf
    touch "$PG_DIR/$BUILT"
}

# A row inserted on the primary must become visible on the replica.
pg_probe_seen() {
    [[ $(pg_replica_sql -c "SELECT count(*) FROM public.$PROBE_TABLE WHERE token = '$1'" 2>/dev/null) == 1 ]]
}
pg_probe() {
    local token ok=0
    token="probe-$(date +%s%N)-$$"
    pg_primary_sql -c 'SET client_min_messages = warning' \
        -c "CREATE TABLE IF NOT EXISTS public.$PROBE_TABLE (token text PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())" \
        -c "INSERT INTO public.$PROBE_TABLE (token) VALUES ('$token')" >/dev/null ||
        die "cannot write the probe row on the main PostgreSQL (database $PG_DB)"
    wait_for "$WAIT_SECS" pg_probe_seen "$token" && ok=1
    pg_primary_sql -c "DROP TABLE IF EXISTS public.$PROBE_TABLE" >/dev/null ||
        warn "could not drop public.$PROBE_TABLE on the main PostgreSQL"
    ((ok)) || fail "a row inserted on the main PostgreSQL did not reach the replica within ${WAIT_SECS}s" "$PG_LOG"
    log "PostgreSQL replica on 127.0.0.1:$PG_REPLICA_PORT: streaming, probe row replicated"
}

ensure_pg() {
    pg_find_binaries
    pg_check_primary_settings
    pg_ensure_replication_hba
    if ((REBUILD != 1)) && pg_built && pg_running && pg_healthy; then
        log "PostgreSQL replica on 127.0.0.1:$PG_REPLICA_PORT: already running and streaming"
        return 0
    fi
    if ((REBUILD == 1)); then
        log "ROWFERRY_REPLICAS_REBUILD=1: rebuilding the PostgreSQL replica"
        pg_build
    elif ! pg_built; then
        pg_build
    elif ! pg_bring_up; then
        warn "the existing PostgreSQL replica does not come up or cannot stream; rebuilding it from scratch"
        tail_logs "$PG_LOG"
        pg_build
    else
        pg_probe
        return 0
    fi
    pg_bring_up || fail "the freshly built PostgreSQL replica did not start streaming within ${WAIT_SECS}s" "$PG_LOG"
    pg_probe
}

pg_stop_cmd() {
    if [[ ! -d $PG_DATA ]]; then
        log "PostgreSQL replica: not built"
        return 0
    fi
    pg_find_bindir_offline
    if pg_running; then pg_stop; else log "PostgreSQL replica: not running"; fi
}

# stop/status must work while the main server is down: take the binaries
# matching the replica's data dir instead of asking the primary.
pg_find_bindir_offline() {
    [[ -n $PG_BIN ]] && return 0
    PG_MAJOR=$(cat "$PG_DATA/PG_VERSION" 2>/dev/null || true)
    if [[ -z $PG_MAJOR ]]; then
        PG_MAJOR=$(compgen -G '/usr/lib/postgresql/*/bin/postgres' | sort -V | tail -n 1 | cut -d/ -f5) || true
    fi
    PG_BIN=${PG_BINDIR:-/usr/lib/postgresql/$PG_MAJOR/bin}
    PSQL=$PG_BIN/psql
    [[ -x $PSQL ]] || PSQL=psql
}

pg_status() {
    local state info lag
    pg_find_bindir_offline
    if [[ ! -f $PG_DIR/$BUILT ]]; then
        printf '%-11s %-8s %s\n' pg-replica missing "not built ($PG_DATA)"
        return 1
    fi
    if ! pg_running; then
        printf '%-11s %-8s %s\n' pg-replica stopped "127.0.0.1:$PG_REPLICA_PORT (data $PG_DATA)"
        return 1
    fi
    info=$(pg_replica_sql -c "SELECT CASE WHEN pg_is_in_recovery() THEN 'in recovery' ELSE 'NOT in recovery' END
            || ', wal receiver ' || coalesce((SELECT status FROM pg_stat_wal_receiver), 'not running')
            || ', replayed up to ' || coalesce(pg_last_wal_replay_lsn()::text, '?')" 2>&1) || info="does not answer: $info"
    lag=$(pg_primary_sql -c "SELECT 'primary sees it ' || state || ', replay lag ' ||
            pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn))
            FROM pg_stat_replication WHERE application_name = '$PG_APP' LIMIT 1" 2>/dev/null || true)
    state=running
    pg_healthy || state=UNHEALTHY
    printf '%-11s %-8s %s\n' pg-replica "$state" \
        "pid $(pg_pid), 127.0.0.1:$PG_REPLICA_PORT: $info${lag:+; $lag}"
    [[ $state == running ]]
}

# ------------------------------------------------------------------- MariaDB

MY_SERVER=
MY_CLIENT=
MY_ADMIN=
MY_INSTALL_DB=

my_find_binaries() {
    if [[ -x /usr/sbin/mariadbd ]]; then
        MY_SERVER=/usr/sbin/mariadbd
    elif [[ -x /usr/sbin/mysqld ]]; then MY_SERVER=/usr/sbin/mysqld; fi
    if have mariadb; then MY_CLIENT=mariadb; elif have mysql; then MY_CLIENT=mysql; fi
    if have mariadb-admin; then MY_ADMIN=mariadb-admin; elif have mysqladmin; then MY_ADMIN=mysqladmin; fi
    if have mariadb-install-db; then
        MY_INSTALL_DB=mariadb-install-db
    elif have mysql_install_db; then MY_INSTALL_DB=mysql_install_db; fi
    [[ -n $MY_SERVER && -n $MY_CLIENT && -n $MY_ADMIN && -n $MY_INSTALL_DB ]] ||
        die "MariaDB server/client programs not found; run scripts/services.sh first (or apt-get install -y mariadb-server mariadb-client)"
}

# Clients never read option files (--no-defaults): the machine's my.cnf points
# at the main server's socket, and a ~/.my.cnf password must not leak in.
# my_tcp PORT ARGS...: root over TCP with an empty password, what tests use.
my_tcp() {
    "$MY_CLIENT" --no-defaults --protocol=TCP -h 127.0.0.1 -P "$1" -u root \
        --connect-timeout=5 -N -B "${@:2}"
}
# my_sock DIR ARGS...: root through the instance's socket (unix_socket auth as
# the OS root user; works before the TCP logins exist).
my_sock() {
    "$MY_CLIENT" --no-defaults --protocol=SOCKET --socket="$1/mysqld.sock" -u root \
        --connect-timeout=5 -N -B "${@:2}"
}

my_pid() { cat "$1/mysqld.pid" 2>/dev/null; }

# Is the mariadbd of instance DIR running? (The pid must belong to a process
# whose command line names this data dir, not to a recycled pid.)
my_running() {
    local pid
    pid=$(my_pid "$1") || return 1
    pid_alive "$pid" "--datadir=$1/data"
}

# 0: answers on its socket. 2: the process is gone (it will not answer).
my_alive() {
    "$MY_ADMIN" --no-defaults --protocol=SOCKET --socket="$1/mysqld.sock" -u root \
        --connect-timeout=2 ping >/dev/null 2>&1 && return 0
    [[ -n ${MY_STARTING_PID:-} ]] && ! pid_alive "$MY_STARTING_PID" "--datadir=$1/data" && return 2
    return 1
}

# my_start NAME DIR PORT SERVER_ID EXTRA_OPTION...: start mariadbd in the
# background (its own session, so it outlives this script and its terminal)
# and wait until it answers. No option file is read (--no-defaults): the
# instance is fully described here.
my_start() {
    local name=$1 dir=$2 port=$3 id=$4
    shift 4
    if my_running "$dir"; then
        wait_for "$WAIT_SECS" my_alive "$dir"
        return
    fi
    rm -f "$dir/mysqld.pid" "$dir/mysqld.sock" "$dir/mysqld.sock.lock"
    check_port_free "MariaDB $name" "$port"
    log "starting MariaDB $name on 127.0.0.1:$port"
    setsid nohup "$MY_SERVER" --no-defaults --user=mysql \
        --basedir="$(dirname "$(dirname "$MY_SERVER")")" --datadir="$dir/data" \
        --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" \
        --port="$port" --bind-address=127.0.0.1 --skip-name-resolve \
        --log-error="$dir/error.log" --server-id="$id" \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
        --innodb-buffer-pool-size=64M --performance-schema=OFF \
        "$@" </dev/null >>"$dir/mariadbd.out" 2>&1 9>&- &
    MY_STARTING_PID=$!
    local rc=0
    wait_for "$WAIT_SECS" my_alive "$dir" || rc=$?
    MY_STARTING_PID=
    return "$rc"
}

# my_stop NAME DIR: clean shutdown (mariadb-admin shutdown, else SIGTERM),
# SIGKILL only if it does not exit within a minute.
my_stop() {
    local name=$1 dir=$2 pid i
    if ! my_running "$dir"; then
        log "MariaDB $name: not running"
        return 0
    fi
    pid=$(my_pid "$dir")
    log "stopping MariaDB $name (pid $pid)"
    "$MY_ADMIN" --no-defaults --protocol=SOCKET --socket="$dir/mysqld.sock" -u root \
        --connect-timeout=5 shutdown >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        pid_alive "$pid" "--datadir=$dir/data" || return 0
        sleep 0.2
    done
    warn "MariaDB $name did not stop within 60s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

my_primary_start() {
    # The binary log and relay log get fixed names (the defaults derive from
    # the host name, which may change).
    my_start primary "$MYP_DIR" "$MY_PRIMARY_PORT" 2 \
        --log-bin="$MYP_DIR/data/mariadb-bin" --binlog-format=ROW \
        --binlog-expire-logs-seconds=604800
}
my_replica_start() {
    my_start replica "$MYR_DIR" "$MY_REPLICA_PORT" 3 \
        --relay-log="$MYR_DIR/data/relay-bin" --read-only=OFF
}

# Fields of SHOW REPLICA STATUS, one "Name: value" per line.
# (Not my_tcp: -N would drop the field names from the \G output.)
my_replica_status() {
    "$MY_CLIENT" --no-defaults --protocol=TCP -h 127.0.0.1 -P "$MY_REPLICA_PORT" -u root \
        --connect-timeout=5 -e 'SHOW REPLICA STATUS\G' 2>/dev/null
}
my_field() { sed -n "/^ *$1: /{s///p;q}" <<<"$2"; }

# 0: both replication threads run. 2: replication stopped on an error that a
# restart will not fix (the primary lacks the binlog the replica needs, or an
# event failed to apply).
my_replicating() {
    local st
    st=$(my_replica_status) || return 1
    [[ $(my_field Slave_IO_Running "$st") == Yes && $(my_field Slave_SQL_Running "$st") == Yes ]] && return 0
    [[ $(my_field Last_IO_Errno "$st") == 1236 ]] && return 2
    [[ $(my_field Last_SQL_Errno "$st") =~ ^[1-9] ]] && return 2
    return 1
}

my_pair_healthy() {
    my_running "$MYP_DIR" && my_running "$MYR_DIR" &&
        my_tcp "$MY_PRIMARY_PORT" -e 'SELECT 1' test >/dev/null 2>&1 &&
        my_tcp "$MY_REPLICA_PORT" -e 'SELECT 1' test >/dev/null 2>&1 &&
        my_replicating
}

# Start an existing pair and wait until it replicates. Non-zero: rebuild.
my_bring_up() {
    [[ -f $MYP_DIR/$BUILT && -f $MYR_DIR/$BUILT ]] || return 1
    my_primary_start || return 1
    my_replica_start || return 1
    my_tcp "$MY_PRIMARY_PORT" -e 'SELECT 1' test >/dev/null 2>&1 || return 1
    my_tcp "$MY_REPLICA_PORT" -e 'SELECT 1' test >/dev/null 2>&1 || return 1
    my_replicating && return 0
    # Threads stopped by hand or after an error: one (re)start attempt.
    my_sock "$MYR_DIR" -e 'START REPLICA' >/dev/null 2>&1 || true
    wait_for "$WAIT_SECS" my_replicating
}

# A new data dir: system tables only; root@localhost authenticates with
# unix_socket until my_accounts_sql adds the empty TCP password.
my_init() {
    local name=$1 dir=$2
    rm -f "$dir/$BUILT"
    [[ -d $dir ]] && safe_wipe "$dir"
    install -d -o mysql -g mysql -m 0755 "$dir"
    log "initialising the MariaDB $name data dir $dir/data"
    "$MY_INSTALL_DB" --no-defaults --user=mysql \
        --basedir="$(dirname "$(dirname "$MY_SERVER")")" --datadir="$dir/data" \
        --auth-root-authentication-method=socket --skip-test-db \
        >"$dir/install-db.log" 2>&1 ||
        fail "mariadb-install-db failed for the MariaDB $name" "$dir/install-db.log"
}

# The main server's logins: root with an empty password over TCP (with
# skip-name-resolve a TCP client is 127.0.0.1, not localhost) and still
# unix_socket for the OS root user. Not written to the binary log: each
# instance gets its own accounts.
my_accounts_sql() {
    cat <<'SQL'
SET SESSION sql_log_bin = 0;
ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket;
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS 'root'@'::1' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'::1' WITH GRANT OPTION;
SQL
}

my_build_pair() {
    log "building the MariaDB primary ($MY_PRIMARY_PORT) / replica ($MY_REPLICA_PORT) pair from scratch"
    my_stop replica "$MYR_DIR"
    my_stop primary "$MYP_DIR"
    my_init primary "$MYP_DIR"
    my_init replica "$MYR_DIR"

    my_primary_start || fail "the new MariaDB primary did not start" "$MYP_DIR/error.log" "$MYP_DIR/mariadbd.out"
    {
        my_accounts_sql
        echo "CREATE USER IF NOT EXISTS '$MY_REPL_USER'@'127.0.0.1' IDENTIFIED BY '$MY_REPL_PASS';"
        echo "GRANT REPLICATION SLAVE ON *.* TO '$MY_REPL_USER'@'127.0.0.1';"
        # Back to logging: database test is created through the binlog, so
        # the replica gets it by replication.
        echo "SET SESSION sql_log_bin = 1;"
        echo "CREATE DATABASE IF NOT EXISTS test CHARACTER SET utf8mb4;"
    } | my_sock "$MYP_DIR" || fail "could not set up accounts on the MariaDB primary" "$MYP_DIR/error.log"

    my_replica_start || fail "the new MariaDB replica did not start" "$MYR_DIR/error.log" "$MYR_DIR/mariadbd.out"
    # Empty gtid_slave_pos + MASTER_USE_GTID=slave_pos: start at the very
    # beginning of the primary's (new) binary log.
    {
        my_accounts_sql
        echo "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$MY_PRIMARY_PORT,"
        echo "  MASTER_USER='$MY_REPL_USER', MASTER_PASSWORD='$MY_REPL_PASS',"
        echo "  MASTER_CONNECT_RETRY=2, MASTER_USE_GTID=slave_pos;"
        echo "START SLAVE;"
    } | my_sock "$MYR_DIR" || fail "could not configure replication on the MariaDB replica" "$MYR_DIR/error.log"

    wait_for "$WAIT_SECS" my_replicating ||
        fail "the new MariaDB replica does not replicate: $(my_replica_status | grep -E 'Running|Last_.*Error:' | tr -s ' ' | tr '\n' ';')" \
            "$MYR_DIR/error.log" "$MYP_DIR/error.log"
    touch "$MYP_DIR/$BUILT" "$MYR_DIR/$BUILT"
}

my_probe_seen() {
    [[ $(my_tcp "$MY_REPLICA_PORT" -e "SELECT COUNT(*) FROM test.$PROBE_TABLE WHERE token = '$1'" 2>/dev/null) == 1 ]]
}
my_probe() {
    local token ok=0 st
    token="probe-$(date +%s%N)-$$"
    my_tcp "$MY_PRIMARY_PORT" -e "CREATE TABLE IF NOT EXISTS test.$PROBE_TABLE (id INT AUTO_INCREMENT PRIMARY KEY, token VARCHAR(64) NOT NULL) ENGINE=InnoDB;
        INSERT INTO test.$PROBE_TABLE (token) VALUES ('$token')" ||
        fail "cannot write the probe row on the MariaDB primary (root@127.0.0.1:$MY_PRIMARY_PORT, database test)" "$MYP_DIR/error.log"
    wait_for "$WAIT_SECS" my_probe_seen "$token" && ok=1
    my_tcp "$MY_PRIMARY_PORT" -e "DROP TABLE IF EXISTS test.$PROBE_TABLE" ||
        warn "could not drop test.$PROBE_TABLE on the MariaDB primary"
    ((ok)) || fail "a row inserted on the MariaDB primary did not reach the replica within ${WAIT_SECS}s" "$MYR_DIR/error.log" "$MYP_DIR/error.log"
    st=$(my_replica_status)
    [[ $(my_field Slave_IO_Running "$st") == Yes && $(my_field Slave_SQL_Running "$st") == Yes ]] ||
        fail "MariaDB replication threads are not both running after the probe" "$MYR_DIR/error.log"
    log "MariaDB primary 127.0.0.1:$MY_PRIMARY_PORT -> replica 127.0.0.1:$MY_REPLICA_PORT: Slave_IO_Running=Yes, Slave_SQL_Running=Yes, probe row replicated"
}

ensure_mariadb() {
    my_find_binaries
    if ((REBUILD != 1)) && [[ -f $MYP_DIR/$BUILT && -f $MYR_DIR/$BUILT ]] && my_pair_healthy; then
        log "MariaDB pair on 127.0.0.1:$MY_PRIMARY_PORT -> $MY_REPLICA_PORT: already running and replicating"
        return 0
    fi
    if ((REBUILD == 1)); then
        log "ROWFERRY_REPLICAS_REBUILD=1: rebuilding the MariaDB pair"
        my_build_pair
    elif [[ ! -f $MYP_DIR/$BUILT || ! -f $MYR_DIR/$BUILT ]]; then
        my_build_pair
    elif ! my_bring_up; then
        warn "the existing MariaDB pair does not come up or does not replicate; rebuilding both from scratch"
        tail_logs "$MYP_DIR/error.log" "$MYR_DIR/error.log"
        my_build_pair
    fi
    my_probe
}

my_status_one() {
    local name=$1 dir=$2 port=$3 detail=$4
    if [[ ! -f $dir/$BUILT ]]; then
        printf '%-11s %-8s %s\n' "$name" missing "not built ($dir)"
        return 1
    fi
    if ! my_running "$dir"; then
        printf '%-11s %-8s %s\n' "$name" stopped "127.0.0.1:$port (data $dir/data)"
        return 1
    fi
    if ! my_tcp "$port" -e 'SELECT 1' test >/dev/null 2>&1; then
        printf '%-11s %-8s %s\n' "$name" UNHEALTHY "pid $(my_pid "$dir"), 127.0.0.1:$port: root@127.0.0.1 cannot log in to database test"
        return 1
    fi
    printf '%-11s %-8s %s\n' "$name" running "pid $(my_pid "$dir"), 127.0.0.1:$port: $detail"
}

my_status() {
    my_find_binaries
    local rc=0 gtid st detail state
    gtid=$(my_tcp "$MY_PRIMARY_PORT" -e 'SELECT @@gtid_binlog_pos' 2>/dev/null || true)
    my_status_one my-primary "$MYP_DIR" "$MY_PRIMARY_PORT" "binlog ROW, gtid_binlog_pos ${gtid:-?}" || rc=1
    st=$(my_replica_status || true)
    detail="Slave_IO_Running=$(my_field Slave_IO_Running "$st"), Slave_SQL_Running=$(my_field Slave_SQL_Running "$st"), Seconds_Behind_Master=$(my_field Seconds_Behind_Master "$st"), Gtid_IO_Pos $(my_field Gtid_IO_Pos "$st")"
    for state in Last_IO_Error Last_SQL_Error; do
        [[ -n $(my_field "$state" "$st") ]] && detail+=", $state: $(my_field "$state" "$st")"
    done
    if my_status_one my-replica "$MYR_DIR" "$MY_REPLICA_PORT" "$detail"; then
        my_replicating || rc=1
    else
        rc=1
    fi
    return "$rc"
}

# ------------------------------------------------------------------- main

print_env() {
    echo "export ROWFERRY_PG_REPLICA_URL=postgres://$PG_USER@127.0.0.1:$PG_REPLICA_PORT/$PG_DB"
    echo "export ROWFERRY_MY_PRIMARY_URL=mysql://root@127.0.0.1:$MY_PRIMARY_PORT/test"
    echo "export ROWFERRY_MY_REPLICA_URL=mysql://root@127.0.0.1:$MY_REPLICA_PORT/test"
}

# One start/stop at a time (two concurrent test runs both calling start).
# The servers are started with fd 9 closed (9>&-): they must not inherit the
# lock and hold it for as long as they run.
take_lock() {
    install -d -m 0755 "$BASE"
    exec 9>"$BASE/.lock"
    flock -w 300 9 || die "another scripts/replicas.sh start/stop holds $BASE/.lock"
}

main() {
    local cmd=${1:-start}
    case $cmd in
    start)
        is_root || die "start needs root (it runs the servers as the postgres and mysql OS users): sudo bash scripts/replicas.sh start"
        local t0=$SECONDS
        take_lock
        ensure_pg
        ensure_mariadb
        log "all replicas up ($((SECONDS - t0))s); URLs: eval \"\$(bash scripts/replicas.sh env)\""
        ;;
    stop)
        is_root || die "stop needs root: sudo bash scripts/replicas.sh stop"
        take_lock
        pg_stop_cmd
        if [[ -d $MYP_DIR || -d $MYR_DIR ]]; then
            my_find_binaries
            # Replica first, so it does not log a lost connection to its primary.
            my_stop replica "$MYR_DIR"
            my_stop primary "$MYP_DIR"
        else
            log "MariaDB pair: not built"
        fi
        ;;
    status)
        local rc=0
        pg_status || rc=3
        my_status || rc=3
        return "$rc"
        ;;
    env) print_env ;;
    -h | --help | help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' ;;
    *) die "unknown command '$cmd' (start, stop, status, env)" ;;
    esac
}

main "$@"
