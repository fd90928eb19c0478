#!/usr/bin/env bash
# start-cli.sh: the SQL shell (iotdb-ctl) against a DataNode or standalone server, with
# IoTDB's start-cli options (see docs/operations.md, "Scripts").
set -euo pipefail
# shellcheck source=sbin/iotdb-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/iotdb-common.sh"

usage() {
    cat <<USAGE
Usage: $(basename "$0") [-h HOST[:PORT][,HOST[:PORT]...]] [-p PORT] [-u USER] [-pw PASSWORD]
       [-e STATEMENT] [--format table|csv|json] [-c FILE]

Opens an interactive SQL shell on a DataNode (statements end with ';', quit with 'quit'),
or with -e runs one statement, prints its result and exits with its status. Runs
iotdb-ctl from the installation's binaries.

Options:
  -h HOST[:PORT]       the DataNode (or several, comma-separated: the first that answers,
                       the next when it fails); default: dn_rpc_address of the configuration
  -p PORT              the port of each HOST given without one; default: dn_rpc_port of the
                       configuration (6667)
  -u USER              user name (default root)
  -pw PASSWORD         password; default: root_password of the configuration for root,
                       else root
  -e STATEMENT         run STATEMENT and exit
  --format FORMAT      table (default), csv or json
  -c, --config FILE    the configuration read for the defaults above (optional: a client
                       machine without one uses IoTDB's defaults)
  --help               this help

Environment: IOTDB_HOME, IOTDB_CONF, IOTDB_BIN_DIR (see docs/operations.md, "Scripts").
USAGE
}

hosts=""
port=""
user="root"
password=""
statement=""
has_statement=0
format="table"
while [ "$#" -gt 0 ]; do
    case "$1" in
        --help)
            usage
            exit 0
            ;;
        -h | -p | -u | -pw | -e | --format | -c | --config)
            [ "$#" -ge 2 ] || die "$1 needs a value (see --help)"
            case "$1" in
                -h) hosts="$2" ;;
                -p) port="$2" ;;
                -u) user="$2" ;;
                -pw) password="$2" ;;
                -e)
                    statement="$2"
                    has_statement=1
                    ;;
                --format) format="$2" ;;
                -c | --config) IOTDB_CONF="$2" ;;
            esac
            shift 2
            ;;
        *)
            echo "$(basename "$0"): unexpected argument: $1" >&2
            usage >&2
            exit 2
            ;;
    esac
done
if [ -d "$IOTDB_CONF" ]; then
    IOTDB_CONF="$IOTDB_CONF/iotdb-system.toml"
fi

if [ -z "$hosts" ]; then
    hosts="$(conf_get dn_rpc_address 127.0.0.1)"
    # A server listening on every address is reached on loopback.
    case "$hosts" in 0.0.0.0 | "::") hosts="127.0.0.1" ;; esac
fi
if [ -z "$port" ]; then
    port="$(conf_get dn_rpc_port 6667)"
fi
case "$port" in
    '' | *[!0-9]*) die "-p $port: not a port number" ;;
esac
# HOST without a port gets PORT; HOST:PORT stays as it is.
endpoints=""
IFS=',' read -r -a host_list <<<"$hosts"
for host in "${host_list[@]}"; do
    case "$host" in
        "") continue ;;
        *:*) endpoint="$host" ;;
        *) endpoint="$host:$port" ;;
    esac
    endpoints="${endpoints:+$endpoints,}$endpoint"
done
[ -n "$endpoints" ] || die "-h $hosts: no host"
if [ -z "$password" ]; then
    if [ "$user" = root ]; then
        password="$(conf_get root_password root)"
    else
        password="root"
    fi
fi

bin="$(bin_dir iotdb-ctl)"
if [ "$has_statement" -eq 1 ]; then
    exec "$bin/iotdb-ctl" -h "$endpoints" -u "$user" -p "$password" --format "$format" sql "$statement"
else
    exec "$bin/iotdb-ctl" -h "$endpoints" -u "$user" -p "$password" --format "$format" cli
fi
