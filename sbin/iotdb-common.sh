# shellcheck shell=bash
# iotdb-common.sh: what every sbin/ script shares (sourced, never run). It finds the
# installation, its configuration file and its binaries, reads keys of the configuration,
# and knows where each role keeps its pid file and log.
#
# Environment (all optional):
#   IOTDB_HOME           the installation: sbin/, conf/, bin/ (default: the parent of sbin/)
#   IOTDB_CONF           the configuration file (default: $IOTDB_HOME/conf/iotdb-system.toml)
#   IOTDB_BIN_DIR        where iotdb-server and iotdb-ctl are (default: $IOTDB_HOME/bin if it
#                        holds them, else $IOTDB_HOME/target/release, a checkout after
#                        `cargo build --release`)
#   IOTDB_LOG_DIR        pid files and logs (default: $IOTDB_HOME/logs)
#   IOTDB_START_TIMEOUT  seconds a start script waits for the ready line (default: 60)
#   IOTDB_STOP_TIMEOUT   seconds a stop script waits for a clean stop (default: 90)

# Resolved by the scripts that source this file.
IOTDB_SBIN="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IOTDB_HOME="$(cd "${IOTDB_HOME:-$IOTDB_SBIN/..}" && pwd)"
IOTDB_LOG_DIR="${IOTDB_LOG_DIR:-$IOTDB_HOME/logs}"
IOTDB_CONF="${IOTDB_CONF:-$IOTDB_HOME/conf/iotdb-system.toml}"
# `--set KEY=VALUE` items given to the script, in order (they win over the file).
IOTDB_SETS=()

die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}

# The options every node script takes: -c FILE and --set KEY=VALUE. Consumes them from
# "$@" and leaves the rest in IOTDB_REST; -h/--help calls `usage` and exits.
parse_common_options() {
    IOTDB_REST=()
    while [ "$#" -gt 0 ]; do
        case "$1" in
            -h | --help)
                usage
                exit 0
                ;;
            -c | --config)
                [ "$#" -ge 2 ] || die "$1 needs a file"
                IOTDB_CONF="$2"
                shift 2
                ;;
            --config=*)
                IOTDB_CONF="${1#--config=}"
                shift
                ;;
            --set)
                [ "$#" -ge 2 ] || die "--set needs KEY=VALUE"
                case "$2" in *=*) ;; *) die "--set $2: expected KEY=VALUE" ;; esac
                IOTDB_SETS+=("$2")
                shift 2
                ;;
            --set=*)
                case "${1#--set=}" in *=*) ;; *) die "$1: expected --set=KEY=VALUE" ;; esac
                IOTDB_SETS+=("${1#--set=}")
                shift
                ;;
            *)
                IOTDB_REST+=("$1")
                shift
                ;;
        esac
    done
    if [ -d "$IOTDB_CONF" ]; then
        IOTDB_CONF="$IOTDB_CONF/iotdb-system.toml"
    fi
    [ -f "$IOTDB_CONF" ] || die "no configuration file at $IOTDB_CONF (set IOTDB_CONF or pass -c FILE)"
    IOTDB_CONF="$(cd "$(dirname "$IOTDB_CONF")" && pwd)/$(basename "$IOTDB_CONF")"
}

# Refuses arguments the script does not take.
no_more_arguments() {
    if [ "${#IOTDB_REST[@]}" -gt 0 ]; then
        echo "$(basename "$0"): unexpected argument: ${IOTDB_REST[0]}" >&2
        usage >&2
        exit 2
    fi
}

# Takes -f/--force out of the arguments parse_common_options left (IOTDB_FORCE=1 when given,
# else 0), then refuses the rest (the destroy scripts' options).
take_force_option() {
    local rest=() argument
    IOTDB_FORCE=0
    for argument in "${IOTDB_REST[@]+"${IOTDB_REST[@]}"}"; do
        case "$argument" in
            -f | --force) IOTDB_FORCE=1 ;;
            *) rest+=("$argument") ;;
        esac
    done
    IOTDB_REST=("${rest[@]+"${rest[@]}"}")
    no_more_arguments
}

# The options every node script documents.
common_options_help() {
    cat <<EOF
  -c, --config FILE    the configuration file, or a directory holding iotdb-system.toml
                       (default: \$IOTDB_CONF or $IOTDB_HOME/conf/iotdb-system.toml)
  --set KEY=VALUE      overrides a configuration key (repeatable; as iotdb-server --set)
  -h, --help           this help

Environment: IOTDB_HOME, IOTDB_CONF, IOTDB_BIN_DIR, IOTDB_LOG_DIR, IOTDB_START_TIMEOUT,
IOTDB_STOP_TIMEOUT (see docs/operations.md, "Scripts").
EOF
}

# Prints the value of KEY: the last --set, else the file's top-level `KEY = value` line,
# else DEFAULT. Reads simple lines only (a string in double quotes, a number or a bool,
# an optional trailing comment), which is what conf/iotdb-system.toml holds.
conf_get() {
    local key="$1" default="$2" item value=""
    local found=0
    for item in "${IOTDB_SETS[@]+"${IOTDB_SETS[@]}"}"; do
        if [ "$(printf '%s' "${item%%=*}" | tr -d '[:space:]')" = "$key" ]; then
            value="${item#*=}"
            found=1
        fi
    done
    if [ "$found" -eq 0 ] && [ ! -f "$IOTDB_CONF" ]; then
        printf '%s\n' "$default"
        return 0
    fi
    if [ "$found" -eq 0 ]; then
        value="$(awk -v key="$key" '
            /^[[:space:]]*\[/ { exit }
            {
                line = $0
                sub(/^[[:space:]]+/, "", line)
                if (index(line, key) != 1) next
                rest = substr(line, length(key) + 1)
                if (rest !~ /^[[:space:]]*=/) next
                sub(/^[[:space:]]*=[[:space:]]*/, "", rest)
                value = rest
                found = 1
            }
            END { if (found) print value; else exit 1 }
        ' "$IOTDB_CONF")" || {
            printf '%s\n' "$default"
            return 0
        }
    fi
    value="$(printf '%s' "$value" | sed -e 's/^[[:space:]]*//')"
    case "$value" in
        \"*)
            value="${value#\"}"
            value="${value%%\"*}"
            ;;
        *)
            value="${value%%#*}"
            value="$(printf '%s' "$value" | sed -e 's/[[:space:]]*$//')"
            ;;
    esac
    printf '%s\n' "$value"
}

# An absolute path: PATH itself, or PATH under IOTDB_HOME (where the server runs).
absolute_path() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "$IOTDB_HOME/$1" ;;
    esac
}

# The node's data directory (data_dir), absolute. Refuses `/` so that nothing a destroy
# script derives from it can be a system directory.
data_dir() {
    local dir
    dir="$(absolute_path "$(conf_get data_dir data)")"
    dir="${dir%/}"
    [ -n "$dir" ] || die "data_dir resolves to /: refusing"
    printf '%s\n' "$dir"
}

# The directory of the installation's binaries that holds BINARY (iotdb-server by default).
bin_dir() {
    local binary="${1:-iotdb-server}"
    if [ -n "${IOTDB_BIN_DIR:-}" ]; then
        [ -x "$IOTDB_BIN_DIR/$binary" ] || die "IOTDB_BIN_DIR=$IOTDB_BIN_DIR has no $binary"
        printf '%s\n' "$IOTDB_BIN_DIR"
    elif [ -x "$IOTDB_HOME/bin/$binary" ]; then
        printf '%s\n' "$IOTDB_HOME/bin"
    elif [ -x "$IOTDB_HOME/target/release/$binary" ]; then
        printf '%s\n' "$IOTDB_HOME/target/release"
    else
        die "no $binary in $IOTDB_HOME/bin or $IOTDB_HOME/target/release: run \`cargo build --release\` in the checkout, or set IOTDB_BIN_DIR"
    fi
}

# A role's display name.
role_name() {
    case "$1" in
        confignode) echo "ConfigNode" ;;
        datanode) echo "DataNode" ;;
        standalone) echo "standalone server" ;;
        *) die "unknown role $1" ;;
    esac
}

pid_file() { printf '%s\n' "$IOTDB_LOG_DIR/$1.pid"; }
log_file() { printf '%s\n' "$IOTDB_LOG_DIR/$1.log"; }

# Prints the pid of ROLE's running process and succeeds, when its pid file names a live
# iotdb-server of that role; fails otherwise (no pid file, a dead process, or a pid the
# system gave to some other program since).
running_pid() {
    local role="$1" file pid args
    file="$(pid_file "$role")"
    [ -f "$file" ] || return 1
    pid="$(tr -cd '0-9' <"$file")"
    [ -n "$pid" ] || return 1
    alive "$pid" || return 1
    args="$(ps -p "$pid" -o args= 2>/dev/null)" || return 1
    case "$args" in
        *iotdb-server*" $role"*) printf '%s\n' "$pid" ;;
        *) return 1 ;;
    esac
}

# Succeeds when some process holds the lock of DIR (`DIR/.lock`, taken by a running
# iotdb-server with flock(2)); fails when the lock is free, absent, or cannot be tested.
lock_held() {
    local lock="$1/.lock"
    [ -f "$lock" ] || return 1
    command -v flock >/dev/null 2>&1 || return 1
    if flock -n "$lock" true 2>/dev/null; then
        return 1
    fi
    return 0
}

# VALUE of the variable NAME as a whole number of seconds, or a clear refusal.
seconds() {
    case "$2" in
        '' | *[!0-9]*) die "$1=$2: expected a whole number of seconds" ;;
    esac
    printf '%s\n' "$2"
}

# Whether process PID still runs: it exists and is not a zombie waiting for a parent (an
# init that does not reap) to collect its exit status.
alive() {
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state="$(ps -p "$1" -o stat= 2>/dev/null)" || return 1
    case "$state" in
        Z*) return 1 ;;
    esac
    return 0
}

# The line a role prints on stdout once it serves (iotdb_node's READY_LINE_PREFIX and
# CONFIGNODE_READY_PREFIX).
ready_pattern() {
    case "$1" in
        confignode) echo "iotdb-server confignode ready: " ;;
        *) echo "iotdb-server ready: clients on " ;;
    esac
}

# Starts ROLE in the background with the configuration and --set items, its output
# appended to its log, its pid in its pid file; returns once it printed its ready line,
# or fails with the end of its log.
start_node() {
    local role="$1" name bin pid_path log_path pid offset timeout deadline status
    name="$(role_name "$role")"
    bin="$(bin_dir)"
    pid_path="$(pid_file "$role")"
    log_path="$(log_file "$role")"
    timeout="$(seconds IOTDB_START_TIMEOUT "${IOTDB_START_TIMEOUT:-60}")"
    if pid="$(running_pid "$role")"; then
        die "a $name is already running (pid $pid, $pid_path): stop it first with sbin/stop-$role.sh"
    fi
    if [ -f "$pid_path" ]; then
        echo "removing the stale pid file $pid_path (no $name runs with its pid)"
        rm -f "$pid_path"
    fi
    mkdir -p "$IOTDB_LOG_DIR"
    local args=("$role" --config "$IOTDB_CONF") item
    for item in "${IOTDB_SETS[@]+"${IOTDB_SETS[@]}"}"; do
        args+=(--set "$item")
    done
    printf '\n=== %s %s: %s %s\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$(basename "$0")" \
        "$bin/iotdb-server" "${args[*]}" >>"$log_path"
    offset="$(wc -c <"$log_path")"
    # The server runs in IOTDB_HOME, so relative paths of the configuration (data_dir)
    # are relative to the installation; setsid detaches it from this terminal's signals.
    local detach=()
    if command -v setsid >/dev/null 2>&1; then
        detach=(setsid)
    else
        detach=(nohup)
    fi
    (cd "$IOTDB_HOME" && exec "${detach[@]}" "$bin/iotdb-server" "${args[@]}") \
        >>"$log_path" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pid_path"
    echo "starting the $name (pid $pid, log $log_path)"
    deadline=$((SECONDS + timeout))
    while :; do
        local ready
        ready="$(tail -c +"$((offset + 1))" "$log_path" | grep -F -m 1 "$(ready_pattern "$role")" || true)"
        if [ -n "$ready" ]; then
            if ! running_pid "$role" >/dev/null; then
                die "the $name printed its ready line but $pid_path does not name it (pid $pid): stop it with kill $pid"
            fi
            echo "the $name is serving: ${ready#*ready: }"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            status=0
            wait "$pid" || status=$?
            rm -f "$pid_path"
            echo "the $name did not start (exit status $status); from $log_path:" >&2
            why_it_stopped "$log_path" "$offset" >&2
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "the $name did not report ready within $timeout s (IOTDB_START_TIMEOUT); it is still running as pid $pid (replaying a large WAL? waiting for its seed ConfigNode?): watch $log_path, or stop it with sbin/stop-$role.sh; the end of its log:" >&2
            tail -c +"$((offset + 1))" "$log_path" | tail -n 20 >&2
            return 1
        fi
        sleep 0.2
    done
}

# What a node that exited wrote to LOG past OFFSET about why: from its error (`Error: `,
# the server's report of what stopped it, or a panic) on, 20 lines, before any backtrace;
# the last 20 lines when there is no such line.
why_it_stopped() {
    local log="$1" offset="$2" report
    report="$(tail -c +"$((offset + 1))" "$log" |
        awk '/^Error: |panicked at/ { on = 1 } /^Stack backtrace:|^stack backtrace:/ { exit } on' |
        head -n 20 || true)"
    if [ -n "$report" ]; then
        printf '%s\n' "$report"
    else
        tail -c +"$((offset + 1))" "$log" | tail -n 20
    fi
}

# Sends SIGTERM to ROLE's process and waits for it to stop (it flushes every region
# first); removes the pid file once it stopped.
stop_node() {
    local role="$1" name pid_path pid timeout deadline dir
    name="$(role_name "$role")"
    pid_path="$(pid_file "$role")"
    timeout="$(seconds IOTDB_STOP_TIMEOUT "${IOTDB_STOP_TIMEOUT:-90}")"
    if ! pid="$(running_pid "$role")"; then
        if [ -f "$pid_path" ]; then
            rm -f "$pid_path"
            echo "no $name is running (removed the stale pid file $pid_path)"
        else
            echo "no $name is running (no pid file at $pid_path)"
        fi
        dir="$(data_dir)"
        role_dirs "$role" "$dir"
        for dir in "${ROLE_DIRS[@]}"; do
            if lock_held "$dir"; then
                die "but $dir is locked by a running iotdb-server that these scripts did not start (another IOTDB_LOG_DIR?); stop that process yourself"
            fi
        done
        return 0
    fi
    echo "stopping the $name (pid $pid)"
    kill -TERM "$pid"
    deadline=$((SECONDS + timeout))
    while alive "$pid"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "the $name (pid $pid) did not stop within $timeout s of SIGTERM (IOTDB_STOP_TIMEOUT); it may still be flushing: wait and run this script again, or kill -9 $pid (acknowledged writes are in its WAL). Its pid file stays." >&2
            return 1
        fi
        sleep 0.2
    done
    rm -f "$pid_path"
    echo "the $name stopped"
}

# Sets ROLE_DIRS to the directories ROLE owns under DATA_DIR (each holds its `.lock`).
role_dirs() {
    case "$1" in
        confignode) ROLE_DIRS=("$2/confignode") ;;
        datanode) ROLE_DIRS=("$2/datanode") ;;
        standalone) ROLE_DIRS=("$2/confignode" "$2/datanode") ;;
    esac
}

# Deletes the data and logs of ROLES (confignode, datanode, standalone's log), after
# checking that none of them runs and, unless FORCE is 1, asking.
destroy_nodes() {
    local force="$1" role pid dir data targets=() target answer
    shift
    data="$(data_dir)"
    # A standalone server holds both roles' directories.
    for role in "$@" standalone; do
        if pid="$(running_pid "$role")"; then
            die "the $(role_name "$role") is running (pid $pid): stop it first with sbin/stop-$role.sh"
        fi
    done
    for role in "$@"; do
        role_dirs "$role" "$data"
        for dir in "${ROLE_DIRS[@]}"; do
            if lock_held "$dir"; then
                die "$dir is in use by a running iotdb-server (not started with this IOTDB_LOG_DIR): stop it first"
            fi
        done
    done
    for role in "$@"; do
        role_dirs "$role" "$data"
        for dir in "${ROLE_DIRS[@]}"; do
            # A standalone server's directories are the two roles' ones: list each once.
            case " ${targets[*]+"${targets[*]}"} " in *" $dir "*) continue ;; esac
            [ -e "$dir" ] && targets+=("$dir")
        done
        for target in "$(log_file "$role")" "$(log_file "$role")".* "$(pid_file "$role")"; do
            [ -e "$target" ] && targets+=("$target")
        done
    done
    if [ "${#targets[@]}" -eq 0 ]; then
        echo "nothing to delete: no data or logs of $* under $data and $IOTDB_LOG_DIR"
        return 0
    fi
    echo "this deletes, for good:"
    printf '  %s\n' "${targets[@]}"
    if [ "$force" != 1 ]; then
        printf 'delete them? [y/N] '
        answer=""
        read -r answer || true
        case "$answer" in
            y | Y | yes | YES) ;;
            *)
                echo "nothing deleted"
                return 1
                ;;
        esac
    fi
    rm -rf -- "${targets[@]}"
    # Leave no empty shells behind: the next start creates what it needs.
    rmdir -- "$data" 2>/dev/null || true
    rmdir -- "$IOTDB_LOG_DIR" 2>/dev/null || true
    echo "deleted: the next start begins as a fresh node"
}
