#!/usr/bin/env bash
# remove-datanode.sh: removes a DataNode from the cluster (see docs/operations.md,
# "Shrinking: remove a DataNode"); remove-confignode.sh runs it with --role confignode.
set -euo pipefail
# shellcheck source=sbin/iotdb-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/iotdb-common.sh"

usage() {
    cat <<USAGE
Usage: $(basename "$0") NODE [-h HOST[:PORT]] [-u USER] [-pw PASSWORD] [-c FILE]
       [--timeout SECONDS] [--no-wait]

Removes DataNode NODE (its id from SHOW CLUSTER, or its rpc address and port as SHOW
DATANODES lists them, e.g. iotdb-4:6667): the node turns Removing, every region replica on
it moves to another DataNode (writes and queries go on), then it leaves the cluster and
stops itself. Refused (nothing changes) while fewer Running DataNodes than the largest
replication factor would remain, while another DataNode holding a replica of one of its
region groups is not Running, while one of its groups is already migrating, and while the
node itself is not Running and holds the only replica of a group (start it first). Waits for the end (at most --timeout, default 1800 s; the removal goes on
after it), printing how many replicas the node still holds.

Options:
  -h HOST[:PORT]       a DataNode to ask (any one); default: dn_rpc_address and dn_rpc_port
                       of the configuration
  -u USER              user name (default root)
  -pw PASSWORD         password; default: root_password of the configuration for root
  -c, --config FILE    the configuration read for the defaults above
  --timeout SECONDS    longest wait
  --no-wait            start the removal and return
  --role confignode    remove a ConfigNode instead (what remove-confignode.sh does): NODE
                       is its id or internal address:port (SHOW CONFIGNODES); refused for
                       the last ConfigNode (the leader hands leadership over first)
  --help               this help
USAGE
}

role="datanode"
node=""
host=""
user="root"
password=""
timeout=1800
wait_flag=""
while [ "$#" -gt 0 ]; do
    case "$1" in
        --help)
            usage
            exit 0
            ;;
        --no-wait)
            wait_flag="--no-wait"
            shift
            ;;
        --role)
            [ "$#" -ge 2 ] || die "--role needs a value"
            role="$2"
            shift 2
            ;;
        -h | -u | -pw | -c | --config | --timeout)
            [ "$#" -ge 2 ] || die "$1 needs a value (see --help)"
            case "$1" in
                -h) host="$2" ;;
                -u) user="$2" ;;
                -pw) password="$2" ;;
                -c | --config) IOTDB_CONF="$2" ;;
                --timeout) timeout="$2" ;;
            esac
            shift 2
            ;;
        -*)
            echo "$(basename "$0"): unknown option: $1" >&2
            usage >&2
            exit 2
            ;;
        *)
            [ -z "$node" ] || die "one NODE at a time (got $node and $1)"
            node="$1"
            shift
            ;;
    esac
done
[ -n "$node" ] || {
    usage >&2
    exit 2
}
if [ -d "$IOTDB_CONF" ]; then
    IOTDB_CONF="$IOTDB_CONF/iotdb-system.toml"
fi
if [ -z "$host" ]; then
    host="$(conf_get dn_rpc_address 127.0.0.1)"
    case "$host" in 0.0.0.0 | "::") host="127.0.0.1" ;; esac
fi
case "$host" in
    *:*) ;;
    *) host="$host:$(conf_get dn_rpc_port 6667)" ;;
esac
if [ -z "$password" ]; then
    if [ "$user" = root ]; then
        password="$(conf_get root_password root)"
    else
        password="root"
    fi
fi
bin="$(bin_dir iotdb-ctl)"
case "$role" in
    datanode | confignode) ;;
    *) die "--role $role: datanode or confignode" ;;
esac
exec "$bin/iotdb-ctl" -h "$host" -u "$user" -p "$password" "remove-$role" "$node" \
    --timeout "$timeout" ${wait_flag:+"$wait_flag"}
