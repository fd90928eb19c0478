#!/usr/bin/env bash
# start-standalone.sh: starts the standalone server of this installation in the background and returns
# once it serves (see docs/operations.md, "Scripts").
set -euo pipefail
# shellcheck source=sbin/iotdb-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/iotdb-common.sh"

usage() {
    cat <<USAGE
Usage: $(basename "$0") [-c FILE] [--set KEY=VALUE]...

Starts a standalone server: a ConfigNode and a DataNode in one process.
Runs \`iotdb-server standalone --config FILE\` in the background from $IOTDB_HOME, with its
pid in $IOTDB_LOG_DIR/standalone.pid and its output appended to $IOTDB_LOG_DIR/standalone.log,
and returns once it printed its ready line (at most ${IOTDB_START_TIMEOUT:-60} s: IOTDB_START_TIMEOUT).
Refuses to start a second copy while the pid file names a running one. Exits non-zero,
with the end of the log, when the standalone server does not start.

Options:
USAGE
    common_options_help
}

parse_common_options "$@"
no_more_arguments
start_node standalone
