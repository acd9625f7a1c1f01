#!/usr/bin/env bash
# A Spark Connect server from the pyspark package in .venv, for trying `--engine spark` the way
# it runs against a cluster: `SPARK_REMOTE=sc://127.0.0.1:15002 churn score --engine spark ...`.
#   scripts/spark-connect.sh start [MASTER] [PORT]   # default local[2], 15002, loopback only
#   scripts/spark-connect.sh stop
# A real cluster runs its own Connect server (sbin/start-connect-server.sh on the cluster, or a
# managed endpoint); point SPARK_REMOTE at it and install this package on its Python workers.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$PWD/.venv/bin/python"
SPARK_HOME="$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
STATE="${CHURN_SPARK_CONNECT_DIR:-${TMPDIR:-/tmp}/churn-spark-connect}"
mkdir -p "$STATE"
export SPARK_HOME PYSPARK_PYTHON="$PY" SPARK_LOG_DIR="$STATE" SPARK_PID_DIR="$STATE"
case "${1:-}" in
  start)
    master="${2:-local[2]}"; port="${3:-15002}"
    bash "$SPARK_HOME/sbin/start-connect-server.sh" --master "$master" \
      --conf spark.connect.grpc.binding.address=127.0.0.1 \
      --conf spark.connect.grpc.binding.port="$port" \
      --conf spark.sql.session.timeZone=UTC \
      --conf spark.ui.enabled=false >/dev/null
    for _ in $(seq 1 120); do
      if grep -q "Spark Connect server started" "$STATE"/*.out 2>/dev/null; then
        echo "Spark Connect on sc://127.0.0.1:$port (logs: $STATE)"; exit 0
      fi
      sleep 1
    done
    echo "the Spark Connect server did not start; see $STATE" >&2; exit 1 ;;
  stop)
    bash "$SPARK_HOME/sbin/stop-connect-server.sh" >/dev/null || true
    rm -f "$STATE"/*.out ;;
  *)
    echo "usage: $0 start [MASTER] [PORT] | stop" >&2; exit 2 ;;
esac
