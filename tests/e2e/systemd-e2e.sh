#!/bin/bash
# End-to-end test of wf-supervisor under a real systemd, on a host that need not run systemd as
# PID 1 (a CI container or VM, as root).
#
# A Debian/Ubuntu tree made by debootstrap (suite and mirror taken from the host's apt sources,
# so the daemon's glibc matches) is booted with `systemd-nspawn -b --register=no --keep-unit`
# inside a private mount namespace and a dedicated cgroup; the container's systemd is driven with
# `nsenter -t LEADER -a systemctl ...`. The daemon, wfctl, the unit files, the sysusers/tmpfiles
# confs and a test config are installed into the tree before boot. The script proves:
#
#   1. `systemctl start wf-supervisor` returns only once READY=1 was sent (Type=notify);
#   2. `systemctl status` shows the daemon's STATUS= line;
#   3. runs (an argv run through wfctl, a workflow run through a raw gRPC call on the socket)
#      live in the service's delegated cgroup, under .../wf-supervisor.service/runs/<run_id>;
#   4. `systemctl reload` applies a changed runs.max_live_runs (a spawn over it waits QUEUED);
#   5. a wedged core (SIGUSR2 with [debug] wedge_on_sigusr2) is restarted by the watchdog;
#   6. `systemctl stop` ends every run (TERM-ignoring runs and a setsid escapee included) and
#      leaves no process and no cgroup;
#   7. `journalctl -u wf-supervisor` carries structured run events (RUN_ID=run_...).
#
# On exit, whatever happened, the container is stopped, its cgroups removed and the unpacked tree
# deleted; the mounts lived in a private mount namespace that ends with the container.
#
# usage: systemd-e2e.sh --daemon PATH/wf-supervisor --wfctl PATH/wfctl
# env:   WF_E2E_CACHE     directory for the debootstrapped tree tarball
#                         (default: ${TMPDIR:-/tmp}/wf-supervisor-e2e-cache)
#        WF_E2E_CGMODE    unified (default: the container runs pure cgroup v2) or hybrid
#                         (hybrid needs a hybrid host)
#        WF_E2E_SUITE     suite to debootstrap (default: the host's VERSION_CODENAME)
#        WF_E2E_MIRROR    mirror (default: the host's apt sources for that suite)
#        WF_E2E_KEEP_LOGS directory to copy the logs to at the end (default: logs are deleted)
set -euo pipefail

die() { echo "FAIL: $*" >&2; exit 1; }

DAEMON="" WFCTL=""
while [ $# -gt 0 ]; do
  case "$1" in
    --daemon) DAEMON=$2; shift 2 ;;
    --wfctl) WFCTL=$2; shift 2 ;;
    *) die "unknown argument $1 (usage: $0 --daemon PATH --wfctl PATH)" ;;
  esac
done
[ -x "$DAEMON" ] || die "--daemon: no executable at '$DAEMON'"
[ -x "$WFCTL" ] || die "--wfctl: no executable at '$WFCTL'"
[ "$(id -u)" = 0 ] || die "must run as root"
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
UNITS=$REPO/systemd
[ -f "$UNITS/wf-supervisor.service" ] || die "no unit files under $UNITS"

T0=$(date +%s.%N)
ts() { awk -v a="$T0" -v b="$(date +%s.%N)" -v m="$*" 'BEGIN{printf "[%6.1fs] %s\n", b-a, m}'; }
ok() { ts "OK   $*"; }
known() { # a regression of an issue this test once found: a failure
  die "$*"
}

# ---- 0. host tools ------------------------------------------------------------------------
need=()
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v zstd >/dev/null || need+=(zstd)
if [ ${#need[@]} -gt 0 ]; then
  ts "installing host tools: ${need[*]}"
  apt-get update -q >/dev/null || die "apt-get update failed"
  # NB: systemd-container depends on the exact systemd version, so this may upgrade systemd.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" \
    >/dev/null || die "apt-get install ${need[*]} failed"
fi
for t in systemd-nspawn debootstrap zstd nsenter unshare pgrep findmnt; do
  command -v "$t" >/dev/null || die "host tool $t is missing"
done
ts "host tools ready ($(systemd-nspawn --version | head -1))"

# ---- 1. suite, mirror, cache ------------------------------------------------------------
SUITE=${WF_E2E_SUITE:-$( . /etc/os-release 2>/dev/null; echo "${VERSION_CODENAME:-}")}
SUITE=${SUITE:-bookworm}
# The mirror from apt's configured sources: the first source serving $SUITE itself.
apt_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v s="$SUITE" '
      function flush() { if (uri != "" && has && deb) { print uri; found = 1; exit } uri = ""; has = 0; deb = 0 }
      /^[ \t]*$/ { flush(); next }
      /^Types:/ { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) has = 1 }
      END { if (!found) flush() }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v s="$SUITE" '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                                      if ($(i + 1) == s) { print $i; exit } }' "$f"
  done
}
MIRROR=${WF_E2E_MIRROR:-$(apt_mirror | head -1)}
[ -n "$MIRROR" ] || die "no apt source for suite '$SUITE' on this host; set WF_E2E_MIRROR"
PACKAGES=systemd,systemd-sysv,dbus,procps,curl
CACHE_DIR=${WF_E2E_CACHE:-${TMPDIR:-/tmp}/wf-supervisor-e2e-cache}
mkdir -p "$CACHE_DIR"
CACHE=$CACHE_DIR/rootfs-$SUITE-$(uname -m)-$(echo "$MIRROR $PACKAGES v1" | md5sum | cut -c1-8).tar.zst

NAME=wf-e2e-$$ # machine name and cgroup name
W=$(mktemp -d "${TMPDIR:-/tmp}/wf-e2e.XXXXXX")
ROOT=$W/root
LOGS=$W/logs
mkdir -p "$LOGS"
NSPAWN="" LEADER="" CG=""

# ---- teardown: runs on every exit ---------------------------------------------------------
cg_procs() { # every pid in the cgroup trees $CG
  local c
  for c in $CG; do [ -d "$c" ] && find "$c" -name cgroup.procs -exec cat {} + 2>/dev/null; done
}
teardown() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [ "$rc" != 0 ]; then
    echo "---- failure diagnostics (exit $rc) ----" >&2
    if [ -n "$LEADER" ] && kill -0 "$LEADER" 2>/dev/null; then
      nsenter -t "$LEADER" -a systemctl status wf-supervisor --no-pager -l >&2 2>&1
      nsenter -t "$LEADER" -a journalctl -u wf-supervisor --no-pager -n 80 >&2 2>&1
    fi
    echo "---- console (last 40 lines) ----" >&2
    tail -n 40 "$LOGS/console.log" >&2 2>/dev/null; echo >&2
  fi
  if [ -n "$NSPAWN" ] && kill -0 "$NSPAWN" 2>/dev/null; then
    [ -n "$LEADER" ] && timeout 10 nsenter -t "$LEADER" -a systemctl poweroff --no-block >/dev/null 2>&1
    for _ in $(seq 300); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$NSPAWN" 2>/dev/null; then # nspawn turns SIGTERM into a container halt
      kill -TERM "$NSPAWN"
      for _ in $(seq 100); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$NSPAWN" 2>/dev/null
    fi
  fi
  [ -n "$NSPAWN" ] && wait "$NSPAWN" 2>/dev/null
  # Anything still in our cgroups is ours: kill it, then remove the cgroups, deepest first.
  local pids
  for _ in $(seq 50); do
    pids=$(cg_procs)
    [ -z "$pids" ] && break
    kill -KILL $pids 2>/dev/null
    sleep 0.1
  done
  [ -n "$pids" ] && echo "teardown: processes left in $CG: $pids" >&2
  local c
  for c in $CG; do [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null; done
  for c in $CG; do [ -d "$c" ] && echo "teardown: cgroup $c could not be removed" >&2; done
  if [ -n "${WF_E2E_KEEP_LOGS:-}" ]; then
    mkdir -p "$WF_E2E_KEEP_LOGS" && cp -a "$LOGS/." "$WF_E2E_KEEP_LOGS/"
  fi
  # The tree was never mounted in this namespace (nspawn mounts in its own); make sure anyway.
  if findmnt -rn -o TARGET | grep -qF "$W"; then
    echo "teardown: mounts left under $W, not deleting it:" >&2
    findmnt -rn -o TARGET | grep -F "$W" >&2
  else
    rm -rf --one-file-system "$W"
  fi
  ts "teardown done (exit $rc)"
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- 2. the tree: debootstrap once, then from the cache --------------------------------------
build_cache() (
  flock 9 # one builder at a time; others wait and reuse its tarball
  if [ ! -s "$CACHE" ]; then
    ts "debootstrap $SUITE from $MIRROR (cold; takes a few minutes)"
    build=$W/build # deleted with $W by the teardown, whatever happens
    trap 'rm -f "$CACHE.tmp.$$"' EXIT
    # In a private mount namespace, so that its /proc and /sys mounts in the tree never reach
    # the host, even when it is interrupted.
    if ! unshare --mount --propagation private -- \
      debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$build" "$MIRROR" \
      >"$LOGS/debootstrap.log" 2>&1; then
      tail -n 30 "$LOGS/debootstrap.log" >&2
      rm -rf --one-file-system "$build"
      die "debootstrap failed"
    fi
    rm -f "$build"/var/cache/apt/archives/*.deb "$build"/var/lib/apt/lists/*_* 2>/dev/null || true
    tar -C "$build" --numeric-owner -cf - . | zstd -q -T0 -o "$CACHE.tmp.$$"
    mv "$CACHE.tmp.$$" "$CACHE"
    rm -rf --one-file-system "$build"
    ts "tree cached: $CACHE ($(du -h "$CACHE" | cut -f1))"
  fi
) 9>"$CACHE_DIR/.lock"
build_cache
mkdir "$ROOT"
if ! zstd -qdc "$CACHE" | tar -C "$ROOT" --numeric-owner -xf -; then
  ts "the cached tree $CACHE is damaged: building it again"
  rm -f "$CACHE"
  rm -rf --one-file-system "$ROOT" && mkdir "$ROOT"
  build_cache
  zstd -qdc "$CACHE" | tar -C "$ROOT" --numeric-owner -xf - || die "cannot unpack $CACHE"
fi
ts "tree unpacked from cache ($SUITE, $(du -sh "$ROOT" | cut -f1))"

# ---- 3. install the daemon, its units and a test config into the tree ---------------------
echo "$NAME" >"$ROOT/etc/hostname" # debootstrap copied the host's
install -D -m755 "$DAEMON" "$ROOT/usr/local/bin/wf-supervisor"
install -D -m755 "$WFCTL" "$ROOT/usr/local/bin/wfctl"
install -D -m644 "$UNITS/wf-supervisor.service" "$ROOT/etc/systemd/system/wf-supervisor.service"
install -D -m644 "$UNITS/wf-supervisor.socket" "$ROOT/etc/systemd/system/wf-supervisor.socket"
install -D -m644 "$UNITS/wf-supervisor.sysusers.conf" "$ROOT/etc/sysusers.d/wf-supervisor.conf"
install -D -m644 "$UNITS/wf-supervisor.tmpfiles.conf" "$ROOT/etc/tmpfiles.d/wf-supervisor.conf"
# The watchdog proof needs a short interval; everything else is the unit as shipped.
install -D -m644 /dev/stdin "$ROOT/etc/systemd/system/wf-supervisor.service.d/test.conf" <<'EOF'
[Service]
WatchdogSec=4s
EOF
install -D -m644 /dev/stdin "$ROOT/etc/wf-supervisor/config.toml" <<'EOF'
[runs]
max_live_runs = 50
# Applied where the memory and pids controllers reach the delegated cgroup.
pids_max = 64
memory_max_bytes = 268435456

[debug]
wedge_on_sigusr2 = true

# The daemon runs `PROGRAM -p PROMPT --output-format stream-json --verbose`; this stand-in for
# the Claude CLI announces itself like Claude and then works (sleeps) until it is killed.
[workflows.demo]
program = "/usr/local/bin/wf-e2e-agent"
EOF
install -D -m755 /dev/stdin "$ROOT/usr/local/bin/wf-e2e-agent" <<'EOF'
#!/bin/sh
echo '{"type":"system","subtype":"init","session_id":"e2e00000-0000-4000-8000-000000000001","model":"e2e","cwd":"/","tools":[]}'
exec sleep 300
EOF
ts "installed wf-supervisor, wfctl, units, drop-in (WatchdogSec=4s), sysusers, tmpfiles, config"

# ---- 4. boot the container in its own cgroup and mount namespace ----------------------------
CGMODE=${WF_E2E_CGMODE:-unified}
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
  CG=/sys/fs/cgroup/$NAME                        # pure cgroup v2 host
  [ "$CGMODE" = hybrid ] && die "WF_E2E_CGMODE=hybrid needs a hybrid host"
elif [ -d /sys/fs/cgroup/unified ] && [ -d /sys/fs/cgroup/systemd ]; then
  CG="/sys/fs/cgroup/unified/$NAME /sys/fs/cgroup/systemd/$NAME"   # hybrid host
else
  die "no cgroup v2 hierarchy on this host (neither unified nor hybrid)"
fi
for c in $CG; do mkdir "$c"; done
[ "$CGMODE" = unified ] && export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1
# --register=no --keep-unit: no host systemd/machined to register with or to get a scope from.
# The tmpfs keeps nspawn's /run/systemd bookkeeping off the host; it goes with the namespace.
RUNMNT=/run/systemd; [ -d /run/systemd ] || RUNMNT=/run
unshare --mount --propagation private -- sh -c '
  for c in '"$CG"'; do echo $$ > "$c/cgroup.procs"; done
  mount -n -t tmpfs tmpfs '"$RUNMNT"' && mkdir -p /run/systemd
  exec systemd-nspawn --quiet -D "$1" -M "$2" -b --register=no --keep-unit \
       --private-network --link-journal=no --console=read-only' sh "$ROOT" "$NAME" \
  </dev/null >"$LOGS/console.log" 2>&1 &
NSPAWN=$!
for _ in $(seq 300); do # the container's PID 1 is nspawn's child, once it has exec'd systemd
  LEADER=$(pgrep -P "$NSPAWN" -x systemd || true)
  [ -n "$LEADER" ] && break
  kill -0 "$NSPAWN" 2>/dev/null || die "systemd-nspawn exited early"
  sleep 0.1
done
[ -n "$LEADER" ] || die "no systemd in the container after 30 s"
ct() { nsenter -t "$LEADER" -a "$@"; } # run a command inside the container
state=""
for _ in $(seq 1200); do
  state=$(ct systemctl is-system-running 2>/dev/null || true)
  case "$state" in running | degraded) break ;; esac
  sleep 0.1
done
ts "container booted ($CGMODE cgroups, leader pid $LEADER): system $state"
case "$state" in running) ;; degraded) ct systemctl --failed --no-pager || true ;;
  *) die "container did not finish booting (state '$state')" ;; esac

# Polls COMMAND (a shell snippet run on the host) every 0.2 s until it succeeds, for SECS.
wait_for() {
  local secs=$1 what=$2; shift 2
  local end=$(($(date +%s) + secs))
  until "$@"; do
    [ "$(date +%s)" -lt "$end" ] || die "timed out after ${secs}s waiting for: $what"
    sleep 0.2
  done
}
prop() { ct systemctl show -P "$1" wf-supervisor; }
SOCK=/run/wf-supervisor/wf.sock
wfctl() { ct /usr/local/bin/wfctl --socket "$SOCK" "$@"; }
run_pid() { wfctl get "$1" | sed -n 's/^ *pid: *\([0-9][0-9]*\).*/\1/p'; }
has_pid() { [ -n "$(run_pid "$1")" ]; }
v2_cgroup() { ct sed -n 's/^0:://p' "/proc/$1/cgroup"; }
# A workflow spawn through the API socket: Spawn{workflow, prompt} as a raw gRPC call made with
# curl (wfctl spawns argv only). Prints the response with non-text bytes blanked; the new run id
# is in it as plain text.
byte() { printf "\\$(printf %03o "$1")"; }
spawn_workflow() { # WORKFLOW PROMPT (each under 128 bytes)
  local wf=$1 prompt=$2
  {
    printf '\0\0\0\0'; byte $((2 + ${#wf} + 2 + ${#prompt})) # gRPC frame: uncompressed, length
    byte 0x3a; byte "${#wf}"; printf '%s' "$wf"                  # field 7 (workflow), string
    byte 0x42; byte "${#prompt}"; printf '%s' "$prompt"          # field 8 (prompt), string
  } | ct curl -sS --http2-prior-knowledge --unix-socket "$SOCK" --max-time 20 \
    -H 'content-type: application/grpc' -H 'te: trailers' --data-binary @- -D /dev/stderr \
    http://localhost/wf.supervisor.v1.Supervisor/Spawn 2>"$LOGS/grpc-headers.txt" |
    tr -c 'a-zA-Z0-9_.\n' ' '
  grep -qi '^grpc-status: *0' "$LOGS/grpc-headers.txt" ||
    { cat "$LOGS/grpc-headers.txt" >&2; die "Spawn{workflow=$wf} was not answered with grpc-status 0"; }
}

# A workflow spawn through the socket: `wfctl spawn WORKFLOW PROMPT` where wfctl has that form,
# else the raw gRPC call. Prints the new run id.
spawn_wf() {
  if ct /usr/local/bin/wfctl spawn --help 2>/dev/null | grep -q 'WORKFLOW'; then
    wfctl spawn "$1" "$2" | grep -o 'run_[0-9a-f]\{12\}' | head -1
  else
    spawn_workflow "$1" "$2" | grep -o 'run_[0-9a-f]\{12\}' | head -1
  fi
}
ct /usr/local/bin/wfctl spawn --help 2>/dev/null | grep -q 'WORKFLOW' &&
  WF_VIA_NOTE="wfctl spawn WORKFLOW PROMPT" || WF_VIA_NOTE="a raw gRPC Spawn{workflow} made with curl"

# ---- 5. sysusers/tmpfiles at boot, unit verification ------------------------------------
ct getent group wf-operators >/dev/null || die "sysusers did not create group wf-operators"
ct getent passwd wf-agent >/dev/null || die "sysusers did not create user wf-agent"
[ "$(ct stat -c %U /var/lib/wf-supervisor/home)" = wf-agent ] || die "tmpfiles did not create the agents' home"
ok "boot applied sysusers (wf-agent, wf-operators) and tmpfiles (/var/lib/wf-supervisor/home)"
verify=$(ct systemd-analyze verify wf-supervisor.service wf-supervisor.socket 2>&1 || true)
[ -z "$verify" ] || { echo "$verify"; die "systemd-analyze verify (in the container) complained"; }
ok "systemd-analyze verify wf-supervisor.service wf-supervisor.socket: clean"

# ---- 6. start returns once READY ---------------------------------------------------------
ct systemctl start wf-supervisor || die "systemctl start wf-supervisor failed"
# STATUS= travels in the same datagram as READY=1, so it is set the moment start returns.
active=$(ct systemctl is-active wf-supervisor || true)
status_text=$(prop StatusText)
[ "$active" = active ] || die "is-active right after start: $active"
[ -n "$status_text" ] || die "StatusText empty right after start: READY=1 not seen yet?"
ok "systemctl start returned 0; right after: is-active=$active, StatusText='$status_text'"
MAINPID=$(prop MainPID)
ok "main pid $MAINPID in cgroup $(v2_cgroup "$MAINPID"); $(ct journalctl -u wf-supervisor -o cat --no-pager | grep -m1 'containment')"

# ---- 7. systemctl status shows the STATUS line ---------------------------------------------
ct systemctl status wf-supervisor --no-pager >"$LOGS/status-1.txt" || true
grep -F "Status: \"$status_text\"" "$LOGS/status-1.txt" >/dev/null ||
  { cat "$LOGS/status-1.txt"; die "systemctl status does not show the STATUS line"; }
ok "systemctl status: $(grep -F 'Status:' "$LOGS/status-1.txt" | sed 's/^ *//')"

# ---- 8. runs live in the service's delegated cgroup ----------------------------------------
RUN1=$(wfctl spawn -- sleep 300)
[[ "$RUN1" =~ ^run_[0-9a-f]{12}$ ]] || die "wfctl spawn printed '$RUN1'"
wait_for 30 "pid of $RUN1" has_pid "$RUN1"
PID1=$(run_pid "$RUN1")
CG1=$(v2_cgroup "$PID1")
[ "$CG1" = "/system.slice/wf-supervisor.service/runs/$RUN1" ] ||
  die "run $RUN1 (pid $PID1) is in cgroup '$CG1', not in the service's runs/$RUN1"
ok "wfctl spawn -- sleep 300 -> $RUN1, pid $PID1, /proc/$PID1/cgroup: 0::$CG1"

RUN2=$(spawn_workflow demo "say hello" | grep -o 'run_[0-9a-f]\{12\}' | head -1)
[ -n "$RUN2" ] || die "Spawn{workflow=demo} answered without a run id"
wait_for 30 "pid of $RUN2" has_pid "$RUN2"
wait_for 30 "$RUN2 running the agent" sh -c "nsenter -t $LEADER -a cat /proc/$(run_pid "$RUN2")/cmdline | tr '\\0' ' ' | grep -q '^sleep 300'"
PID2=$(run_pid "$RUN2")
CG2=$(v2_cgroup "$PID2")
[ "$CG2" = "/system.slice/wf-supervisor.service/runs/$RUN2" ] ||
  die "workflow run $RUN2 (pid $PID2) is in cgroup '$CG2'"
ARGV2=$(wfctl get "$RUN2" | sed -n 's/^ *command: *//p')
case "$ARGV2" in *"-p"*"say hello"*"--output-format stream-json --verbose"*) ;;
  *) die "workflow run's argv is '$ARGV2'" ;; esac
ok "Spawn{workflow=demo, prompt} (raw gRPC through $SOCK) -> $RUN2, argv: $ARGV2"
ok "workflow run pid $PID2 (the agent exec'd sleep) in cgroup 0::$CG2"
SVC_CG=/sys/fs/cgroup/system.slice/wf-supervisor.service
[ "$CGMODE" = hybrid ] && SVC_CG=/sys/fs/cgroup/unified/system.slice/wf-supervisor.service
ok "delegated cgroup $SVC_CG: controllers='$(ct cat $SVC_CG/cgroup.controllers)'" \
  "subtree_control='$(ct cat $SVC_CG/cgroup.subtree_control)' procs=[$(ct cat $SVC_CG/cgroup.procs | tr '\n' ' ')]"
if ct grep -qw pids "/sys/fs/cgroup$CG1/cgroup.controllers" 2>/dev/null ||
   ct grep -qw pids "/sys/fs/cgroup/unified$CG1/cgroup.controllers" 2>/dev/null; then
  lim=$(ct sh -c "cat /sys/fs/cgroup$CG1/pids.max /sys/fs/cgroup/unified$CG1/pids.max 2>/dev/null | head -1")
  [ "$lim" = 64 ] || die "run cgroup has the pids controller but pids.max is '$lim', not runs.pids_max = 64"
  ok "run cgroup limits applied: pids.max=$lim"
else
  ok "run cgroup limits not checked: this host gives cgroup v2 no controllers (they are bound to v1)"
fi
wait_for 30 "StatusText to count 2 running" sh -c "nsenter -t $LEADER -a systemctl show -P StatusText wf-supervisor | grep -q '^2 running'"
ok "StatusText follows the runs: '$(prop StatusText)'"

# ---- 9. reload applies a changed limit ------------------------------------------------------
ct sed -i 's/^max_live_runs = .*/max_live_runs = 1/' /etc/wf-supervisor/config.toml
reloaded() { ct journalctl -u wf-supervisor -o cat MAX_LIVE_RUNS=1 | grep -q 'config reloaded'; }
ct systemctl reload wf-supervisor || die "systemctl reload failed"
# With ExecReload=kill -HUP, reload may return before the daemon has read the file: wait for
# its log line (and say whether that was needed).
if reloaded; then when="already applied when"; else when="applied only after"; fi
wait_for 30 "the reload to be applied" reloaded
ok "systemctl reload returned 0 ($when it returned): journal has 'config reloaded' with MAX_LIVE_RUNS=1"
QRUN=$(wfctl spawn -- sleep 301) || die "a spawn over the reloaded limit failed"
wfctl get "$QRUN" | grep -q '^status: *queued' ||
  die "a spawn over max_live_runs=1 did not wait QUEUED: $(wfctl get "$QRUN")"
ok "spawn with 2 live runs over max_live_runs=1 waits: $QRUN $(wfctl get "$QRUN" | grep '^waiting')"
counts() { ct systemctl show -P StatusText wf-supervisor | grep -q '^[0-9]* running'; }
end=$(($(date +%s) + 5))
until counts || [ "$(date +%s)" -ge "$end" ]; do sleep 0.2; done
counts || known "after a reload, STATUS stays '$(prop StatusText)' instead of the live counts" \
  "(the core resends its count line only when the counts change)"

# ---- 10. a wedged core is restarted by the watchdog -----------------------------------------
ct sed -i 's/^max_live_runs = .*/max_live_runs = 50/' /etc/wf-supervisor/config.toml
NR0=$(prop NRestarts)
OLDPID=$(prop MainPID)
ct kill -USR2 "$OLDPID"
restarted() {
  local pid st
  pid=$(prop MainPID) st=$(ct systemctl is-active wf-supervisor || true)
  [ "$(prop NRestarts)" -gt "$NR0" ] && [ "$pid" != 0 ] && [ "$pid" != "$OLDPID" ] && [ "$st" = active ]
}
wait_for 90 "the watchdog to restart the wedged daemon" restarted
ok "SIGUSR2 wedged pid $OLDPID; NRestarts $NR0 -> $(prop NRestarts), MainPID now $(prop MainPID), active"
ct journalctl -u wf-supervisor -o cat --no-pager >"$LOGS/journal-after-watchdog.txt"
grep -q 'wedging the core task' "$LOGS/journal-after-watchdog.txt" || die "no wedge in the journal"
grep -i 'watchdog timeout' "$LOGS/journal-after-watchdog.txt" >/dev/null ||
  die "the journal does not say the watchdog fired"
ok "journal: '$(grep -m1 'wedging' "$LOGS/journal-after-watchdog.txt")'"
ok "journal: '$(grep -m1 -i 'watchdog timeout' "$LOGS/journal-after-watchdog.txt")'"
ok "journal: '$(grep -m1 "result 'watchdog'" "$LOGS/journal-after-watchdog.txt" || echo "no \"result 'watchdog'\" line")'"
for p in "$PID1" "$PID2"; do
  ct test -d "/proc/$p" && die "run process $p outlived the watchdog restart"
done
ok "runs of the wedged daemon are gone: $(wfctl ps 2>&1 | grep -E "$RUN1|$RUN2" | tr -s ' ' | tr '\n' ';')"

# ---- 11. stop ends every run, nothing left --------------------------------------------------
RUN3=$(spawn_wf demo "work until stopped")
[ -n "$RUN3" ] || die "the workflow spawn ($WF_VIA_NOTE) gave no run id"
# Ignores TERM (so stop has to escalate to KILL) and leaves its process group with setsid.
RUN4=$(wfctl spawn -- sh -c 'trap "" TERM; setsid sleep 302 & exec sleep 300')
RUN5=$(wfctl spawn -- sleep 300)
wait_for 30 "3 runs with their processes" sh -c "
  [ \$(nsenter -t $LEADER -a pgrep -c -x sleep) -ge 4 ]"
ct sh -c 'for p in $(pgrep -x sleep); do
  echo "pid $p pgid $(ps -o pgid= -p $p | tr -d " ") sid $(ps -o sid= -p $p | tr -d " ")" \
    "cgroup $(sed -n "s/^0:://p" /proc/$p/cgroup): $(tr "\0" " " </proc/$p/cmdline)"
done' >"$LOGS/ps-before-stop.txt"
ok "live before stop: $RUN3 (workflow, by $WF_VIA_NOTE), $RUN4 (ignores TERM, setsid escapee), $RUN5:"
sed 's/^/       /' "$LOGS/ps-before-stop.txt"
ct systemctl stop wf-supervisor || die "systemctl stop failed"
ok "systemctl stop returned 0; is-active=$(ct systemctl is-active wf-supervisor || true)" \
  "Result=$(prop Result) ExecMainStatus=$(prop ExecMainStatus)"
[ "$(prop Result)" = success ] || die "the service did not stop cleanly: Result=$(prop Result)"
left=$(ct pgrep -a sleep || true)
[ -z "$left" ] || die "processes of runs survived the stop: $left"
ct test -d "$SVC_CG" && die "the service cgroup $SVC_CG is still there: $(ct find "$SVC_CG" -type d)"
ok "no sleep process left in the container; cgroup $SVC_CG is gone"
ct journalctl -u wf-supervisor -o cat --no-pager >"$LOGS/journal-after-stop.txt"
grep -q 'every run has ended' "$LOGS/journal-after-stop.txt" || die "the daemon did not end every run"
ok "journal: '$(grep -m1 'every run has ended' "$LOGS/journal-after-stop.txt")'"
for r in "$RUN3" "$RUN4" "$RUN5"; do
  ok "journal: $r finished with STATUS=$(ct journalctl -u wf-supervisor -o verbose "RUN_ID=$r" |
    sed -n 's/^ *STATUS=//p' | tail -1)"
done

# ---- 12. structured run events in the journal ---------------------------------------------
ct journalctl -u wf-supervisor -o verbose --no-pager >"$LOGS/journal-verbose.txt"
n=$(grep -c '^ *RUN_ID=run_' "$LOGS/journal-verbose.txt" || true)
[ "$n" -gt 0 ] || die "no RUN_ID= field in journalctl -u wf-supervisor -o verbose"
for r in "$RUN1" "$RUN2" "$RUN3" "$RUN4" "$RUN5"; do
  grep -q "RUN_ID=$r" "$LOGS/journal-verbose.txt" || die "no journal entry with RUN_ID=$r"
done
ok "journalctl -u wf-supervisor -o verbose: $n entries with RUN_ID=run_..., every run present; e.g.:"
ct journalctl -u wf-supervisor -o verbose --no-pager -n 1 "RUN_ID=$RUN4" |
  grep -vE '^ *(_|SYSLOG_FACILITY|CODE_|TARGET|SPAN_NAME)' | sed 's/^ */       /'

# ---- 13. once-found issues: the socket across a stop, agents as runs.user -----------------------
# The socket unit holds the API socket across daemon restarts; a stop must leave its path alone.
sock_state=$(ct systemctl is-active wf-supervisor.socket || true)
if ct test -S "$SOCK"; then
  ok "after stop, wf-supervisor.socket is $sock_state and $SOCK is still there"
else
  known "after stop, wf-supervisor.socket is $sock_state but $SOCK was unlinked by the stopping" \
    "daemon: the next start is socket-activated on a listener no client can reach"
  ct systemctl restart wf-supervisor.socket # so that the rest can go on
fi
# Agents run as the sysusers user in the shipped layout: default cwd and HOME under the state dir.
ct sed -i 's/^max_live_runs = .*/max_live_runs = 50\nuser = "wf-agent"/' /etc/wf-supervisor/config.toml
ct systemctl start wf-supervisor || die "systemctl start (runs.user = wf-agent) failed"
wait_for 30 "the API after a restart" ct /usr/local/bin/wfctl --socket "$SOCK" health >/dev/null
set +e
probe=$(wfctl spawn -- sh -c 'id -un; touch "$HOME/.wf-e2e-probe" && echo home-writable' 2>&1)
set -e
RUN6=$(echo "$probe" | grep -o 'run_[0-9a-f]\{12\}' | head -1)
[ -n "$RUN6" ] || die "spawn as wf-agent gave no run: $probe"
wait_for 30 "$RUN6 to end" sh -c "nsenter -t $LEADER -a /usr/local/bin/wfctl --socket $SOCK get $RUN6 |
  grep -qE '^status: *(succeeded|failed)'"
out=$(wfctl logs "$RUN6" 2>&1 || true)
if [ "$(echo "$out" | tr '\n' ' ')" = "wf-agent home-writable " ]; then
  ok "a run with runs.user = \"wf-agent\" ran as wf-agent in the default cwd and could write \$HOME"
else
  known "with runs.user = \"wf-agent\", a run in the default cwd does not work: $(echo "$probe" | tail -1)" \
    "$(echo "$out" | tr '\n' ' ') [$(ct stat -c '%n %A %U:%G' /var/lib/wf-supervisor | tr '\n' ' ')]"
fi
ct systemctl stop wf-supervisor || die "the second systemctl stop failed"
[ -z "$(ct pgrep -a sleep || true)" ] || die "processes left after the second stop"

ts "PASS"
