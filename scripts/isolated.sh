#!/usr/bin/env bash
# Run a command in a private network namespace with only loopback up (and its own PID namespace, so every
# process it starts, Ray's included, ends with it). Ray binds every interface; here there is only 127.0.0.1.
# Falls back to running the command directly where unprivileged namespaces are not available.
set -euo pipefail
if unshare --net --pid --fork --mount-proc true 2>/dev/null; then
  exec unshare --net --pid --fork --mount-proc bash -c 'ip link set lo up && exec "$@"' isolated "$@"
elif unshare --user --map-root-user --net --pid --fork --mount-proc true 2>/dev/null; then
  exec unshare --user --map-root-user --net --pid --fork --mount-proc bash -c 'ip link set lo up && exec "$@"' isolated "$@"
else
  echo "warning: no network namespace available; running without loopback isolation" >&2
  exec "$@"
fi
