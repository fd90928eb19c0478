#!/usr/bin/env bash
# remove-confignode.sh: removes a ConfigNode from the cluster (see docs/operations.md,
# "Shrinking: remove a ConfigNode"). Usage: remove-confignode.sh NODE [options of
# remove-datanode.sh]; NODE is the ConfigNode's id or internal address:port.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/remove-datanode.sh" --role confignode "$@"
