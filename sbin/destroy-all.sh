#!/usr/bin/env bash
# destroy-all.sh: deletes the data and logs of every node of this installation (ConfigNode,
# DataNode, standalone), so that the next start begins fresh (see docs/operations.md, "Scripts").
set -euo pipefail
# shellcheck source=sbin/iotdb-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/iotdb-common.sh"

usage() {
    cat <<USAGE
Usage: $(basename "$0") [-f] [-c FILE] [--set KEY=VALUE]...

Deletes the data of this installation's nodes (data_dir/confignode and
data_dir/datanode: a standalone server's too) and their logs. Refuses while a
node runs (its pid file names a live process, or a server holds its directory's lock).
Lists what it deletes and asks first; a fresh start afterwards registers as a new node
with a new id.

Options:
  -f, --force          delete without asking
USAGE
    common_options_help
}

force=0
parse_common_options "$@"
for argument in "${IOTDB_REST[@]+"${IOTDB_REST[@]}"}"; do
    case "$argument" in
        -f | --force) force=1 ;;
        *)
            echo "$(basename "$0"): unexpected argument: $argument" >&2
            usage >&2
            exit 2
            ;;
    esac
done
destroy_nodes "$force" confignode datanode standalone
