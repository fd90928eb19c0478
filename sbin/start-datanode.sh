#!/usr/bin/env bash
# start-datanode.sh: starts the DataNode of this installation in the background and returns
# once it serves (see docs/operations.md, "Scripts").
set -euo pipefail
# shellcheck source=sbin/iotdb-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/iotdb-common.sh"

usage() {
    cat <<USAGE
Usage: $(basename "$0") [-c FILE] [--set KEY=VALUE]...

Starts a DataNode, which registers with dn_seed_config_node (a running ConfigNode):
start the ConfigNodes first.
Runs \`iotdb-server datanode --config FILE\` in the background from $IOTDB_HOME, with its
pid in $IOTDB_LOG_DIR/datanode.pid and its output appended to $IOTDB_LOG_DIR/datanode.log,
and returns once it printed its ready line (at most ${IOTDB_START_TIMEOUT:-60} s: IOTDB_START_TIMEOUT).
Refuses to start a second copy while the pid file names a running one. Exits non-zero,
with the end of the log, when the DataNode does not start.

Options:
USAGE
    common_options_help
}

parse_common_options "$@"
no_more_arguments
start_node datanode
