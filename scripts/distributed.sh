#!/usr/bin/env bash
# The shop as production runs it, on one machine: each service its own
# process (`emporium serve`), each with its own PostgreSQL database, events
# on RabbitMQ, HTTPS on every hop. For benchmarks and trials.
#
#   scripts/distributed.sh start   # databases, certificates, six processes
#   scripts/distributed.sh stop
#
# Needs PostgreSQL (PGHOST/PGUSER, default 127.0.0.1 / postgres, trust or
# PGPASSWORD) and RabbitMQ (AMQP_URL, default guest on 127.0.0.1:5672), and a
# built binary (BIN, default target/release/emporium). Everything lives in
# DIR (default /tmp/emporium-distributed): logs, certificates, secrets.
# The shop answers on https://127.0.0.1:8543 (CA: $DIR/certs/ca.pem); the
# admin is admin@emporium.test with the password in $DIR/admin-password.
set -euo pipefail

BIN=${BIN:-target/release/emporium}
DIR=${DIR:-/tmp/emporium-distributed}
PGHOST=${PGHOST:-127.0.0.1}
PGUSER=${PGUSER:-postgres}
AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
PREFIX=${PREFIX:-emporium_dist}
export PGHOST PGUSER

stop() {
    for pid in "$DIR"/*.pid; do
        [ -e "$pid" ] || continue
        kill "$(cat "$pid")" 2>/dev/null || true
        rm -f "$pid"
    done
}

# `serve NAME PORT VAR=VALUE…`: starts `emporium serve NAME` on PORT and
# waits until it listens.
serve() {
    local name=$1 port=$2
    shift 2
    env EMPORIUM_HTTP_HOST=127.0.0.1 \
        EMPORIUM_HTTP_TLS_CERT="$DIR/certs/$name.pem" \
        EMPORIUM_HTTP_TLS_KEY="$DIR/certs/$name-key.pem" \
        EMPORIUM_EVENTS_AMQP_URL="$AMQP_URL" \
        "$@" "$BIN" serve "$name" --port "$port" >"$DIR/$name.log" 2>&1 &
    echo $! >"$DIR/$name.pid"
    for _ in $(seq 1 100); do
        grep -q "listening" "$DIR/$name.log" && return 0
        sleep 0.1
    done
    echo "$name did not start; see $DIR/$name.log" >&2
    exit 1
}

start() {
    stop
    rm -rf "$DIR"
    mkdir -p -m 0700 "$DIR"
    "$BIN" certs --dir "$DIR/certs" >/dev/null
    CA="$DIR/certs/ca.pem"
    for db in accounts catalog payments orders sandbox; do
        psql -q -d postgres -c "DROP DATABASE IF EXISTS ${PREFIX}_$db WITH (FORCE)" \
            -c "CREATE DATABASE ${PREFIX}_$db"
    done
    url() { echo "postgres://$PGUSER@$PGHOST:5432/${PREFIX}_$1"; }
    head -c 32 /dev/urandom | base64 >"$DIR/kek"
    head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$DIR/admin-password"
    local kek api_key secret
    kek=$(cat "$DIR/kek")
    api_key="sk_dist_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    secret="whsec_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"

    for service in accounts catalog payments orders sandbox-provider; do
        local db=${service%-provider}
        EMPORIUM_DATABASE_URL=$(url "$db") EMPORIUM_KEYS_KEK="$kek" \
            "$BIN" migrate "$service" >/dev/null
    done
    EMPORIUM_DATABASE_URL=$(url catalog) "$BIN" seed >/dev/null

    local jwks=https://127.0.0.1:8181/.well-known/jwks.json
    serve accounts 8181 EMPORIUM_DATABASE_URL="$(url accounts)" EMPORIUM_KEYS_KEK="$kek" \
        EMPORIUM_ADMIN_PASSWORD="$(cat "$DIR/admin-password")" \
        EMPORIUM_LOGIN_MAX_REGISTRATIONS_PER_ADDRESS=1000
    serve catalog 8182 EMPORIUM_DATABASE_URL="$(url catalog)" \
        EMPORIUM_AUTH_JWKS_URL=$jwks EMPORIUM_AUTH_CA_CERT="$CA"
    serve sandbox-provider 8190 EMPORIUM_DATABASE_URL="$(url sandbox)" \
        EMPORIUM_SANDBOX_API_KEY="$api_key" EMPORIUM_SANDBOX_WEBHOOK_SECRET="$secret" \
        EMPORIUM_SANDBOX_WEBHOOK_URL=https://127.0.0.1:8543/api/v1/payments/webhooks \
        EMPORIUM_SANDBOX_CA_CERT="$CA"
    serve payments 8183 EMPORIUM_DATABASE_URL="$(url payments)" \
        EMPORIUM_AUTH_JWKS_URL=$jwks EMPORIUM_AUTH_CA_CERT="$CA" \
        EMPORIUM_PROVIDER_URL=https://127.0.0.1:8190 EMPORIUM_PROVIDER_API_KEY="$api_key" \
        EMPORIUM_PROVIDER_CA_CERT="$CA" EMPORIUM_WEBHOOKS_SECRET="$secret"
    local client
    client=$(EMPORIUM_DATABASE_URL=$(url accounts) EMPORIUM_KEYS_KEK="$kek" "$BIN" accounts \
        create-client --id orders \
        --scopes "stock:reserve stock:adjust payments:authorize payments:capture payments:void payments:refund" |
        grep -v '^{' | tail -n 1)
    serve orders 8184 EMPORIUM_DATABASE_URL="$(url orders)" \
        EMPORIUM_AUTH_JWKS_URL=$jwks EMPORIUM_AUTH_CA_CERT="$CA" \
        EMPORIUM_CLIENT_TOKEN_URL=https://127.0.0.1:8181/api/v1/auth/token \
        EMPORIUM_CLIENT_CLIENT_SECRET="$client" EMPORIUM_CLIENT_CA_CERT="$CA" \
        EMPORIUM_CATALOG_URL=https://127.0.0.1:8182 EMPORIUM_PAYMENTS_URL=https://127.0.0.1:8183
    serve gateway 8543 EMPORIUM_OPS_PORT=9544 \
        EMPORIUM_UPSTREAMS_ACCOUNTS=https://127.0.0.1:8181 \
        EMPORIUM_UPSTREAMS_CATALOG=https://127.0.0.1:8182 \
        EMPORIUM_UPSTREAMS_PAYMENTS=https://127.0.0.1:8183 \
        EMPORIUM_UPSTREAMS_ORDERS=https://127.0.0.1:8184 \
        EMPORIUM_UPSTREAMS_CA_CERT="$CA"
    echo "shop: https://127.0.0.1:8543/api/v1  CA: $CA  logs: $DIR/*.log"
}

case ${1:-} in
start) start ;;
stop) stop ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
