#!/usr/bin/env bash
# stop-confignode.sh: stops the ConfigNode this installation started (see docs/operations.md,
# "Scripts").
set -euo pipefail
# shellcheck source=sbin/iotdb-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/iotdb-common.sh"

usage() {
    cat <<USAGE
Usage: $(basename "$0") [-c FILE] [--set KEY=VALUE]...

Stops the ConfigNode whose pid is in $IOTDB_LOG_DIR/confignode.pid: sends SIGTERM (it flushes
every region and stops) and waits for it to exit (at most ${IOTDB_STOP_TIMEOUT:-90} s:
IOTDB_STOP_TIMEOUT), then removes the pid file. Exits non-zero, keeping the pid file,
when it did not stop in time.
Stop the DataNodes first: clients talk to DataNodes, and DataNodes to the ConfigNode.
Succeeds when no ConfigNode is running, unless its directories under data_dir are locked by
a server these scripts did not start (the configuration is read only for data_dir).

Options:
USAGE
    common_options_help
}

parse_common_options "$@"
no_more_arguments
stop_node confignode
