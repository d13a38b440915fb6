#!/usr/bin/env bash
# The reference remote cache: Debian's nginx serving DIR/data on 127.0.0.1:PORT, with
# anonymous GET/HEAD and WebDAV PUT behind HTTP basic auth.
#
#   scripts/cache-server.sh install              # apt-get install nginx (when missing)
#   scripts/cache-server.sh start DIR PORT [USER:PASSWORD]
#   scripts/cache-server.sh stop DIR             # by the PID nginx wrote to DIR/nginx.pid
#
# The remote URL is then http://127.0.0.1:PORT/maskflow. DIR/access.log has one line per
# request: method, path, status, bytes sent, bytes received. Pitfalls kept in mind (see the
# team's scale-out notes): PUT needs `user www-data;` (else 500) and `client_max_body_size 0`
# (else 1 MB); plain nginx has no PROPFIND, so clients use HEAD; www-data must be able to
# traverse DIR's parents (a `mktemp -d` folder is mode 700).
set -euo pipefail

cmd=${1:-}
case "$cmd" in
install)
    command -v nginx >/dev/null 2>&1 && exit 0
    as_root=""
    [ "$(id -u)" = 0 ] || as_root="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $as_root apt-get install -y -qq nginx >/dev/null ||
        { $as_root apt-get update -qq && $as_root apt-get install -y -qq nginx >/dev/null; }
    ;;
start)
    dir=$(realpath -m "${2:?usage: cache-server.sh start DIR PORT [USER:PASSWORD]}")
    port=${3:?usage: cache-server.sh start DIR PORT [USER:PASSWORD]}
    credentials=${4:-maskflow:maskflow}
    command -v nginx >/dev/null 2>&1 || { echo "nginx is not installed: run scripts/cache-server.sh install" >&2; exit 1; }
    mkdir -p "$dir/data/maskflow" "$dir/tmp"
    # www-data writes the data and the request bodies; it must reach them through every parent.
    d="$dir"
    while [ "$d" != / ]; do chmod o+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done
    chown -R www-data "$dir/data" "$dir/tmp" 2>/dev/null || chmod -R a+rwX "$dir/data" "$dir/tmp"
    echo "${credentials%%:*}:{PLAIN}${credentials#*:}" > "$dir/htpasswd"
    chmod 644 "$dir/htpasswd"
    cat > "$dir/nginx.conf" <<CONF
user www-data;
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 256; }
http {
    log_format transfers '\$request_method \$uri \$status \$body_bytes_sent \$request_length';
    access_log $dir/access.log transfers;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        root $dir/data;
        client_max_body_size 0;
        location /maskflow/ {
            # `maskflow cache verify --remote` lists v1/ac/ and v1/cas/ through the index.
            autoindex on;
            autoindex_format json;
            dav_methods PUT;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
            limit_except GET HEAD {
                auth_basic "maskflow cache";
                auth_basic_user_file $dir/htpasswd;
            }
        }
    }
}
CONF
    nginx -p "$dir" -c "$dir/nginx.conf"
    # Ready when it answers (nginx forks; the pid file appears as it listens).
    for _ in $(seq 50); do
        if [ -s "$dir/nginx.pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "http://127.0.0.1:$port/maskflow"
            exit 0
        fi
        sleep 0.1
    done
    echo "nginx did not start; see $dir/error.log" >&2
    exit 1
    ;;
stop)
    dir=$(realpath -m "${2:?usage: cache-server.sh stop DIR}")
    [ -s "$dir/nginx.pid" ] || exit 0
    pid=$(cat "$dir/nginx.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    ;;
*)
    echo "usage: cache-server.sh install | start DIR PORT [USER:PASSWORD] | stop DIR" >&2
    exit 2
    ;;
esac
