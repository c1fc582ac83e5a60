#!/usr/bin/env bash
# A Docker-compatible Engine API for the Docker provider's tests: podman (Debian's
# `podman` + `runc`) serving `podman system service` on a unix socket under DIR, with all
# of its storage under DIR, and a 2 MB busybox image imported from Debian's
# busybox-static (no registry is reachable, none is needed).
#
#   podman_engine.sh start DIR   start; writes DIR/podman.env, prints "PIDS: <pid>"
#   podman_engine.sh stop DIR    remove DIR's containers, stop the service by its PID,
#                                unmount DIR's overlays
#   podman_engine.sh kill DIR    SIGKILL only the API service (containers keep running);
#                                `start DIR` brings it back on the same socket
#
# DIR/podman.env: PODMAN_SOCK, PODMAN (the CLI with DIR's storage flags), CONTAINERS_CONF,
# PODMAN_IMAGE, PODMAN_PID. Tests run containers with `--network host` only, so every
# backend listens on 127.0.0.1 and no container address (no bridge) ever exists.
#
# Why runc and lowered ulimits: the test machines' kernel mixes cgroup v1 and v2
# ("hybrid"), which crun 1.8 refuses, and root there lacks CAP_SYS_RESOURCE, so podman's
# default RLIMIT_NOFILE/NPROC cannot be set. Never kills by name: only the PID it wrote,
# and only if that process's command line still mentions DIR.
set -euo pipefail
cmd=${1:?usage: podman_engine.sh start|stop DIR}
DIR=${2:?usage: podman_engine.sh start|stop DIR}
mkdir -p "$DIR"; DIR=$(cd "$DIR" && pwd)
P="$DIR/podman"

ours() {  # the recorded service PID, if it is still our process
  [ -n "${PODMAN_PID:-}" ] && [ -r "/proc/$PODMAN_PID/cmdline" ] && tr '\0' ' ' < "/proc/$PODMAN_PID/cmdline" | grep -qF -- "$DIR"
}

kill_service() {
  [ -f "$DIR/podman.env" ] || exit 0
  . "$DIR/podman.env"
  if ours; then
    kill -KILL "$PODMAN_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do [ -d "/proc/$PODMAN_PID" ] || break; sleep 0.1; done
  fi
  rm -f "$DIR/podman.sock"
}

stop() {
  [ -f "$DIR/podman.env" ] || exit 0
  . "$DIR/podman.env"
  export CONTAINERS_CONF
  $PODMAN rm -a -f -t 0 >/dev/null 2>&1 || true
  if ours; then
    kill -TERM "$PODMAN_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do [ -d "/proc/$PODMAN_PID" ] || break; sleep 0.1; done
    kill -KILL "$PODMAN_PID" 2>/dev/null || true
  fi
  awk -v d="$P/" '$2 ~ "^"d {print $2}' /proc/mounts | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" || true; done
  rm -f "$DIR/podman.env"
}

start() {
  for b in podman runc busybox curl; do
    command -v $b >/dev/null || { echo "podman_engine.sh: $b missing; run scripts/install-deps" >&2; exit 2; }
  done
  mkdir -p "$P"/{root,runroot,tmp,netcfg,vol}
  cat > "$P/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$P/events.log"
CONF
  export CONTAINERS_CONF="$P/containers.conf"
  PODMAN="podman --root $P/root --runroot $P/runroot --tmpdir $P/tmp --network-config-dir $P/netcfg --volumepath $P/vol"
  SOCK="$DIR/podman.sock"
  IMAGE=localhost/busybox:latest
  if ! $PODMAN image exists "$IMAGE" 2>/dev/null; then
    rf="$P/rootfs"; mkdir -p "$rf"/{bin,etc,tmp,www,proc,sys,dev}
    cp "$(command -v busybox)" "$rf/bin/busybox"
    for a in sh ls cat echo httpd sleep hostname ps env kill; do ln -sf busybox "$rf/bin/$a"; done
    echo "root:x:0:0:root:/:/bin/sh" > "$rf/etc/passwd"; echo "root:x:0:" > "$rf/etc/group"
    echo ok > "$rf/www/index.html"
    tar -C "$rf" -cf "$P/rootfs.tar" .
    $PODMAN import --change 'CMD ["/bin/sh"]' "$P/rootfs.tar" "$IMAGE" >"$P/import.log" 2>&1
  fi
  setsid $PODMAN system service --time=0 "unix://$SOCK" >"$P/service.log" 2>&1 < /dev/null &
  PID=$!
  for _ in $(seq 1 200); do
    [ "$(curl -s --max-time 1 --unix-socket "$SOCK" http://d/_ping 2>/dev/null)" = OK ] && break
    sleep 0.05
  done
  [ "$(curl -s --max-time 1 --unix-socket "$SOCK" http://d/_ping 2>/dev/null)" = OK ] || {
    echo "podman_engine.sh: the API did not come up; see $P/service.log" >&2; kill "$PID" 2>/dev/null; exit 1; }
  {
    echo "PODMAN_SOCK=$SOCK"
    echo "PODMAN=\"$PODMAN\""
    echo "CONTAINERS_CONF=$P/containers.conf"
    echo "PODMAN_IMAGE=$IMAGE"
    echo "PODMAN_PID=$PID"
  } > "$DIR/podman.env"
  echo "PIDS: $PID"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  kill) kill_service ;;
  *) echo "usage: podman_engine.sh start|stop|kill DIR" >&2; exit 2 ;;
esac
