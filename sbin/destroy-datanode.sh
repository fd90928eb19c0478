#!/usr/bin/env bash
# destroy-datanode.sh: deletes this installation's DataNode data and log, so that the next
# start begins as a fresh node (see docs/operations.md, "Scripts").
set -euo pipefail
# shellcheck source=sbin/iotdb-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/iotdb-common.sh"

usage() {
    cat <<USAGE
Usage: $(basename "$0") [-f] [-c FILE] [--set KEY=VALUE]...

Deletes this installation's DataNode data (data_dir/datanode: regions, WAL,
schema, identity) and its log. Refuses while a
node runs (its pid file names a live process, or a server holds its directory's lock).
Lists what it deletes and asks first; a fresh start afterwards registers as a new node
with a new id.

Options:
  -f, --force          delete without asking
USAGE
    common_options_help
}

parse_common_options "$@"
take_force_option
destroy_nodes "$IOTDB_FORCE" datanode
