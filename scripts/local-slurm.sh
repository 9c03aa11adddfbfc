#!/usr/bin/env bash
# local-slurm.sh — a real multi-node Slurm on one machine (development, CI, first run).
#
# Usage (as root, Debian/Ubuntu; from a user account prefix sudo):
#   scripts/local-slurm.sh up [N]        start (or keep) a cluster of N nodes (default 2)
#   scripts/local-slurm.sh down [--purge] stop what this script started; --purge also deletes the state dir
#   scripts/local-slurm.sh status        say what runs (exit 0: up, 1: partly up, 3: down)
#   scripts/local-slurm.sh --help
#
# What you get: munged, a private MariaDB (127.0.0.1), slurmdbd and slurmctld on the host, and
# N slurmd, each in its own network namespace with hostname n1..nN, address SUBNET.11.. on a
# host bridge (SUBNET.1), NO default route (nothing started inside can leave the machine),
# and a second interface eth1 (SUBNET2.11..) whose host end is connected to nothing: like a NIC
# on a network the nodes do not share, so choosing it (network.interface eth1) must fail,
# 4 CPUs and 4 device-file GPUs (gres/gpu) per node. Partitions: debug (default) and long.
# Accounts: holdem (everyone's default) and other; unknown accounts are rejected by sbatch.
# Clients need no extra env: /etc/slurm/slurm.conf is a symlink to the state dir's config, so
# sinfo/sbatch/squeue/sacct/scontrol and submitit just work. The state dir's cluster.env lists
# nodes, addresses, partitions and accounts for scripts and the test suite.
#
# `up` on a running cluster of N nodes is a no-op. `up M` on a cluster of N != M nodes, or on a
# partly running one, stops it (`down`) and starts it again with M nodes. `down` cancels every job,
# stops slurmctld before the slurmds, kills what is left inside its namespaces, then stops
# slurmdbd, MariaDB and munged — only processes whose PIDs it recorded — and removes its
# namespaces and bridge. It is safe to run twice. The state dir (database, job ids) is kept
# unless --purge is given. `up` on a running cluster also adds a missing second interface (eth1)
# to its namespaces, touching nothing else (clusters started before eth1 existed).
#
# Environment (for a second, independent instance, e.g. in tests; defaults in brackets):
#   LOCAL_SLURM_STATE_DIR [/var/lib/holdem-local-slurm]   all config, logs, PID files, database
#   LOCAL_SLURM_NAME      [holdem]  cluster name; prefix of namespaces, bridge and veths (<= 10 chars)
#   LOCAL_SLURM_SUBNET    [10.77.0] first three octets of the /24 on the bridge
#   LOCAL_SLURM_SUBNET2   [10.78.0] first three octets of the isolated second interfaces' /24
#   LOCAL_SLURM_NODE_PREFIX [n]     node names are <prefix>1..<prefix>N
#   LOCAL_SLURM_PORT_BASE [6817]    slurmctld=base, slurmd=base+1, slurmdbd=base+2, MariaDB=base+3
#   LOCAL_SLURM_ETC_LINK  [1]       1: point /etc/slurm/slurm.conf at this instance; 0: use SLURM_CONF
#   LOCAL_SLURM_TIMEOUT   [120]     seconds each wait may take before it fails and says what it waited for
# Exit codes: 0 ok, 2 bad usage, 3 the cluster could not be started or stopped.
set -euo pipefail

STATE=${LOCAL_SLURM_STATE_DIR:-/var/lib/holdem-local-slurm}
NAME=${LOCAL_SLURM_NAME:-holdem}
SUBNET=${LOCAL_SLURM_SUBNET:-10.77.0}
SUBNET2=${LOCAL_SLURM_SUBNET2:-10.78.0}
PREFIX=${LOCAL_SLURM_NODE_PREFIX:-n}
PORT_BASE=${LOCAL_SLURM_PORT_BASE:-6817}
ETC_LINK=${LOCAL_SLURM_ETC_LINK:-1}
TIMEOUT=${LOCAL_SLURM_TIMEOUT:-120}

PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
GPUS_PER_NODE=4
CPUS_PER_NODE=4
ETC_CONF=/etc/slurm/slurm.conf
CONF=$STATE/etc/slurm.conf
BRIDGE=${NAME}br
CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
DB_PORT=$((PORT_BASE + 3))
MUNGE_SOCKET=$STATE/munge/munge.socket
DB_SOCKET=$STATE/mysql/mysqld.sock
export SLURM_CONF=$CONF

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
usage_error() { echo "error: $*. Run '$0 --help'." >&2; exit 2; }
fail() { echo "error: $*" >&2; exit 3; }
log() { echo "local-slurm: $*"; }

check_settings() {
  [[ $NAME =~ ^[a-z][a-z0-9]{0,9}$ ]] ||
    usage_error "LOCAL_SLURM_NAME=$NAME must be 1-10 lower-case letters/digits starting with a letter"
  [[ $SUBNET =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] ||
    usage_error "LOCAL_SLURM_SUBNET=$SUBNET must be three octets, e.g. 10.77.0"
  [[ $SUBNET2 =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ && $SUBNET2 != "$SUBNET" ]] ||
    usage_error "LOCAL_SLURM_SUBNET2=$SUBNET2 must be three octets other than LOCAL_SLURM_SUBNET, e.g. 10.78.0"
  [[ $PREFIX =~ ^[a-z][a-z0-9-]{0,15}$ ]] ||
    usage_error "LOCAL_SLURM_NODE_PREFIX=$PREFIX must be lower-case letters/digits"
  if ! [[ $PORT_BASE =~ ^[0-9]+$ ]] || ((PORT_BASE < 1024 || PORT_BASE >= 32760)); then usage_error "LOCAL_SLURM_PORT_BASE=$PORT_BASE must be a number in 1024..32759 (below the ephemeral range)"; fi
  [[ $ETC_LINK == 0 || $ETC_LINK == 1 ]] || usage_error "LOCAL_SLURM_ETC_LINK=$ETC_LINK must be 0 or 1"
  if ! [[ $TIMEOUT =~ ^[0-9]+$ ]] || ((TIMEOUT == 0)); then
    usage_error "LOCAL_SLURM_TIMEOUT=$TIMEOUT must be a positive number of seconds"
  fi
  [[ $STATE == /* ]] || usage_error "LOCAL_SLURM_STATE_DIR=$STATE must be an absolute path"
}

require_root() { # require_root ARGS...: the arguments to repeat in the advice
  [[ $(id -u) == 0 ]] && return 0
  local how="bash $0${*:+ $*} from a root shell (this machine has no sudo)"
  command -v sudo >/dev/null 2>&1 && how="sudo bash $0${*:+ $*} (or the same from a root shell)"
  fail "local-slurm.sh must run as root (it creates network namespaces and starts daemons); you are $(id -un). Run: $how"
}

# ---------------------------------------------------------------- processes (by PID file only)

pidfile() { echo "$STATE/run/$1.pid"; }

proc_alive() { # running and not a zombie
  local stat rest
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  rest=${stat##*) }
  [[ ${rest%% *} != Z && ${rest%% *} != X ]]
}

# A PID counts as ours and alive only if it runs, is not a zombie (this machine's init reaps late)
# and still has the expected command name (guards against PID reuse after a reboot).
pid_alive() {
  local pid=$1 expect=$2 comm
  [[ $pid =~ ^[0-9]+$ ]] && proc_alive "$pid" || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [[ $comm == "$expect" ]]
}

# daemon name → expected command name
daemon_comm() { case $1 in slurmd-*) echo slurmd ;; *) echo "$1" ;; esac; }

daemon_pid() { cat "$(pidfile "$1")" 2>/dev/null || true; }

daemon_alive() { pid_alive "$(daemon_pid "$1")" "$(daemon_comm "$1")"; }

# Start a foreground daemon detached from our session; the PID recorded is the daemon's own
# (sh writes $$ and every later step execs), so `down` can stop exactly it.
start_daemon() {
  local name=$1; shift
  local pf; pf=$(pidfile "$name")
  rm -f "$pf"
  # shellcheck disable=SC2016  # $$ and $0 belong to the inner sh
  setsid sh -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pf" "$@" \
    </dev/null >>"$STATE/log/$name.out" 2>&1 9>&- &
  wait_until "PID file of $name ($pf)" 10 "" "$STATE/log/$name.out" test -s "$pf"
}

# wait_until DESCRIPTION SECONDS DAEMON_TO_WATCH LOGFILE COMMAND...
# Polls COMMAND until it succeeds; fails at once if the watched daemon dies, and on the deadline
# says what it waited for and shows the end of the log.
wait_until() {
  local what=$1 secs=$2 watch=$3 logf=$4; shift 4
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [[ -n $watch ]] && ! daemon_alive "$watch"; then
      show_log "$logf"
      fail "$watch exited while waiting for $what (log: $logf)"
    fi
    if ((SECONDS >= deadline)); then
      show_log "$logf"
      fail "timed out after ${secs}s waiting for $what (log: $logf)"
    fi
    sleep 0.1
  done
}

show_log() {
  if [[ -f $1 ]]; then echo "--- last lines of $1:" >&2; tail -n 20 "$1" >&2; fi
}

stop_daemon() {
  local name=$1 pid comm deadline
  pid=$(daemon_pid "$name"); comm=$(daemon_comm "$name")
  if pid_alive "$pid" "$comm"; then
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 30))
    while pid_alive "$pid" "$comm" && ((SECONDS < deadline)); do sleep 0.1; done
    if pid_alive "$pid" "$comm"; then
      log "$name (pid $pid) ignored SIGTERM for 30s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 10))
      while pid_alive "$pid" "$comm" && ((SECONDS < deadline)); do sleep 0.1; done
      pid_alive "$pid" "$comm" && fail "$name (pid $pid) survived SIGKILL"
    fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$(pidfile "$name")"
}

# ---------------------------------------------------------------- install

install_packages() {
  local missing=() bin
  for bin in slurmctld slurmd sbatch munged slurmdbd mariadbd; do
    command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
  done
  command -v ip >/dev/null 2>&1 || missing+=(ip)
  ((${#missing[@]} == 0)) && return 0
  command -v apt-get >/dev/null 2>&1 ||
    fail "missing ${missing[*]} and no apt-get: install Slurm 22.05+, munge, slurmdbd and MariaDB by hand"
  log "installing ${PACKAGES[*]} (missing: ${missing[*]})"
  # Keep apt from starting the distribution's own daemons: we start ours with our own config.
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; own_policy=1
  fi
  # shellcheck disable=SC2064
  trap "[[ $own_policy == 1 ]] && rm -f $policy" EXIT
  if ! compgen -G '/var/lib/apt/lists/*Packages*' >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q || fail "apt-get update failed"
  fi
  local apt_install=(apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" iproute2 util-linux)
  # Stale package lists give 404s: refresh them once and retry.
  DEBIAN_FRONTEND=noninteractive "${apt_install[@]}" ||
    { DEBIAN_FRONTEND=noninteractive apt-get update -q && DEBIAN_FRONTEND=noninteractive "${apt_install[@]}"; } ||
    fail "apt-get install ${PACKAGES[*]} failed (see apt's output above)"
  ((own_policy)) && rm -f "$policy"
  trap - EXIT
  # The packages enable their units; at the next boot they would start with the distribution's
  # config (and ours via /etc/slurm/slurm.conf) on the ports we use. We installed them, so we
  # disable them.
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now slurmctld slurmd slurmdbd munge mariadb >/dev/null 2>&1 || true
    log "disabled the distribution's slurmctld, slurmd, slurmdbd, munge and mariadb units"
  fi
}

# ---------------------------------------------------------------- config

node_name() { echo "$PREFIX$1"; }
node_addr() { echo "$SUBNET.$((10 + $1))"; }
node_addr2() { echo "$SUBNET2.$((10 + $1))"; }
node_ns() { echo "$NAME-$PREFIX$1"; }

write_file() { # atomically: write_file PATH MODE < content
  local tmp="$1.tmp.$$"
  cat >"$tmp"; chmod "$2" "$tmp"; mv -f "$tmp" "$1"
}

write_configs() {
  local n=$1 i ctl_host nodes
  nodes="${PREFIX}[1-$n]"
  ((n == 1)) && nodes=$(node_name 1)
  ctl_host=$(hostname -s)
  # run/*.pid are the PIDs this script recorded; run/own/ holds the daemons' own PID files.
  mkdir -p "$STATE"/{etc,run/own,log,ctld,spool,fakegpu}
  for i in $(seq 0 $((GPUS_PER_NODE - 1))); do
    [[ -c $STATE/fakegpu/nvidia$i ]] || mknod "$STATE/fakegpu/nvidia$i" c 1 3
  done
  {
    cat <<EOF
# Written by scripts/local-slurm.sh; rewritten on every 'up'.
ClusterName=$NAME
SlurmctldHost=$ctl_host($SUBNET.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
# 5 s instead of 120 s: a requeued job waits at least this long for its old credential to expire
# (bench/requeue.py: with 15 s, Slurm alone took ~31 s from the warning signal to the new run).
AuthInfo=cred_expire=5,socket=$MUNGE_SOCKET
StateSaveLocation=$STATE/ctld
SlurmctldPidFile=$STATE/run/own/slurmctld.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdSpoolDir=$STATE/spool/%n
SlurmdPidFile=$STATE/run/own/slurmd-%n.pid
SlurmdLogFile=$STATE/log/slurmd-%n.log
# Report the configured CPUs/GPUs rather than this host's 2 cores (Ray needs CPUs >= GPUs).
SlurmdParameters=config_overrides
SchedulerParameters=sched_interval=2,bf_interval=5
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
MpiDefault=none
SwitchType=switch/none
# submitit never adds --requeue; without this its requeue fails.
JobRequeue=1
ReturnToService=2
KillWait=10
SlurmdTimeout=30
InactiveLimit=0
MailProg=/bin/true
PropagateResourceLimits=NONE
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# For accounting_storage/slurmdbd this names the munge socket (AuthInfo does not cover it).
AccountingStoragePass=$MUNGE_SOCKET
AccountingStorageTRES=gres/gpu
AccountingStorageEnforce=associations
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
EOF
    for i in $(seq 1 "$n"); do
      echo "NodeName=$(node_name "$i") NodeAddr=$(node_addr "$i") NodeHostname=$(node_name "$i") CPUs=$CPUS_PER_NODE RealMemory=16000 Gres=gpu:$GPUS_PER_NODE State=UNKNOWN"
    done
    echo "PartitionName=debug Nodes=$nodes Default=YES MaxTime=INFINITE State=UP"
    echo "PartitionName=long Nodes=$nodes MaxTime=INFINITE State=UP"
  } | write_file "$CONF" 644
  # A GRES with only Count= is silently dropped by 22.05 (node INVAL): give it device files.
  printf 'AutoDetect=off\nNodeName=%s Name=gpu File=%s/fakegpu/nvidia[0-%d]\n' \
    "$nodes" "$STATE" $((GPUS_PER_NODE - 1)) | write_file "$STATE/etc/gres.conf" 644
  [[ -s $STATE/etc/db.pass ]] || head -c 18 /dev/urandom | base64 | tr -d '/+=' | write_file "$STATE/etc/db.pass" 600
  write_file "$STATE/etc/slurmdbd.conf" 600 <<EOF
# Written by scripts/local-slurm.sh.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$STATE/run/own/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$(cat "$STATE/etc/db.pass")
StorageLoc=slurm_acct_db
EOF
  {
    echo "127.0.0.1 localhost"
    echo "$SUBNET.1 $ctl_host"
    for i in $(seq 1 "$n"); do echo "$(node_addr "$i") $(node_name "$i")"; done
  } | write_file "$STATE/etc/hosts" 644
}

link_etc_conf() {
  [[ $ETC_LINK == 1 ]] || return 0
  mkdir -p /etc/slurm
  if [[ -e $ETC_CONF || -L $ETC_CONF ]]; then
    local target; target=$(readlink "$ETC_CONF" || true)
    [[ $target == */etc/slurm.conf && -e ${target%/etc/slurm.conf}/.local-slurm ]] ||
      fail "$ETC_CONF exists and is not a local-slurm.sh link: move it away, or set LOCAL_SLURM_ETC_LINK=0 and use SLURM_CONF=$CONF"
  fi
  ln -sfn "$CONF" "$ETC_CONF"
}

unlink_etc_conf() {
  [[ $ETC_LINK == 1 && -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ]] && rm -f "$ETC_CONF"
  return 0
}

# ---------------------------------------------------------------- network namespaces

setup_network() {
  local n=$1 i ns veth
  ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
  ip addr replace "$SUBNET.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  for i in $(seq 1 "$n"); do
    ns=$(node_ns "$i"); veth=${NAME}v$i
    [[ -e /run/netns/$ns ]] || ip netns add "$ns"
    if ! ip link show "$veth" >/dev/null 2>&1; then
      ip link add "$veth" type veth peer name "${NAME}p$i"
      ip link set "${NAME}p$i" netns "$ns"
      ip -n "$ns" link set "${NAME}p$i" name eth0
    fi
    ip link set "$veth" master "$BRIDGE" up
    ip -n "$ns" addr replace "$(node_addr "$i")/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    # Only the bridge subnet is reachable: no default route, so nothing leaves the machine.
    ! ip -n "$ns" route show default | grep -q . || fail "namespace $ns has a default route; refusing to start"
  done
  setup_second_interfaces "$n"
}

# eth1 in each node namespace: a veth whose host end (<name>w<i>) is up but in no bridge and has no
# address, so a node's eth1 reaches nothing (another node's eth1 address does not answer ARP).
# Idempotent and additive: on a running cluster it only adds what is missing.
setup_second_interfaces() {
  local n=$1 i ns host_end
  for i in $(seq 1 "$n"); do
    ns=$(node_ns "$i"); host_end=${NAME}w$i
    [[ -e /run/netns/$ns ]] || fail "namespace $ns is missing; run '$0 down' and '$0 up $n'"
    if ! ip -n "$ns" link show eth1 >/dev/null 2>&1; then
      ip link del "$host_end" 2>/dev/null || true  # a half-made pair from an interrupted run
      ip link add "$host_end" type veth peer name "${NAME}q$i"
      ip link set "${NAME}q$i" netns "$ns"
      ip -n "$ns" link set "${NAME}q$i" name eth1
      log "added isolated interface eth1 $(node_addr2 "$i") to $(node_name "$i")"
    fi
    ip link set "$host_end" up
    ip -n "$ns" addr replace "$(node_addr2 "$i")/24" dev eth1
    ip -n "$ns" link set eth1 up
    ! ip -n "$ns" route show default | grep -q . || fail "namespace $ns has a default route; refusing to go on"
  done
}

# Kill every process left inside our namespaces (job steps, daemonised Ray...): they are ours by
# construction, found by namespace identity rather than by name.
kill_namespace_processes() {
  local ns ino pids=() p sig deadline
  for ns in /run/netns/"$NAME-$PREFIX"*; do
    [[ -e $ns ]] || continue
    ino=$(stat -L -c %i "$ns")
    for p in /proc/[0-9]*; do
      [[ $(readlink "$p/ns/net" 2>/dev/null) == "net:[$ino]" ]] && pids+=("${p#/proc/}")
    done
  done
  ((${#pids[@]})) || return 0
  log "killing ${#pids[@]} leftover process(es) in the node namespaces: ${pids[*]}"
  for sig in TERM KILL; do
    kill -"$sig" "${pids[@]}" 2>/dev/null || true
    deadline=$((SECONDS + 5))
    while ((SECONDS < deadline)); do
      local left=0
      for p in "${pids[@]}"; do proc_alive "$p" && left=1; done
      ((left)) || return 0
      sleep 0.1
    done
  done
}

teardown_network() {
  local ns veth
  # Delete the veths ourselves: the kernel removes them only some time after their namespace.
  for veth in /sys/class/net/"$NAME"v[0-9]* /sys/class/net/"$NAME"w[0-9]*; do
    [[ -e $veth ]] && ip link del "${veth##*/}" 2>/dev/null
  done
  for ns in /run/netns/"$NAME-$PREFIX"*; do
    [[ -e $ns ]] && ip netns del "${ns##*/}" && log "removed namespace ${ns##*/}"
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link del "$BRIDGE" && log "removed bridge $BRIDGE"
  fi
  return 0
}

# ---------------------------------------------------------------- daemons

start_munge() {
  mkdir -p "$STATE/munge"
  chown munge:munge "$STATE/munge"; chmod 755 "$STATE/munge"
  if [[ ! -s $STATE/munge/munge.key ]]; then
    head -c 1024 /dev/urandom | write_file "$STATE/munge/munge.key" 400
    chown munge:munge "$STATE/munge/munge.key"
  fi
  start_daemon munged setpriv --reuid=munge --regid=munge --init-groups \
    munged -F --socket="$MUNGE_SOCKET" --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" \
    --seed-file="$STATE/munge/munged.seed"
  wait_until "munged to answer on $MUNGE_SOCKET" "$TIMEOUT" munged "$STATE/munge/munged.log" \
    sh -c "munge -n --socket='$MUNGE_SOCKET' | unmunge --socket='$MUNGE_SOCKET'"
}

db_client() { mariadb --no-defaults --socket="$DB_SOCKET" -u root; }

start_mariadb() {
  local datadir=$STATE/mysql/data
  mkdir -p "$STATE/mysql"; chown mysql:mysql "$STATE/mysql"; chmod 750 "$STATE/mysql"
  if [[ ! -d $datadir/mysql ]]; then
    log "initialising MariaDB in $datadir"
    mariadb-install-db --no-defaults --datadir="$datadir" --user=mysql --skip-test-db \
      --auth-root-authentication-method=socket >"$STATE/log/mariadb-install.log" 2>&1 ||
      { show_log "$STATE/log/mariadb-install.log"; fail "mariadb-install-db failed (log: $STATE/log/mariadb-install.log)"; }
  fi
  # Durability is traded for speed: this database only holds a test cluster's accounting.
  start_daemon mariadbd mariadbd --no-defaults --datadir="$datadir" --user=mysql \
    --bind-address=127.0.0.1 --port="$DB_PORT" --socket="$DB_SOCKET" \
    --pid-file="$STATE/mysql/mariadbd.pid" --log-error="$STATE/log/mariadb.log" \
    --skip-name-resolve --innodb-buffer-pool-size=64M --innodb-flush-log-at-trx-commit=0 \
    --innodb-doublewrite=0 --innodb-lock-wait-timeout=900
  wait_until "MariaDB to accept connections on $DB_SOCKET" "$TIMEOUT" mariadbd "$STATE/log/mariadb.log" \
    sh -c "echo 'SELECT 1' | mariadb --no-defaults --socket='$DB_SOCKET' -u root"
  db_client <<EOF
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$(cat "$STATE/etc/db.pass")';
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF
}

start_slurmdbd() {
  start_daemon slurmdbd slurmdbd -D
  wait_until "slurmdbd to answer on 127.0.0.1:$DBD_PORT (sacctmgr show cluster)" "$TIMEOUT" slurmdbd \
    "$STATE/log/slurmdbd.log" sacctmgr -n show cluster
}

sacctmgr_ensure() { # sacctmgr_ensure CHECK_ARGS -- ADD_ARGS
  local check=() arg
  while (($#)); do arg=$1; shift; [[ $arg == -- ]] && break; check+=("$arg"); done
  [[ -n $(sacctmgr -n -P "${check[@]}" 2>/dev/null) ]] || sacctmgr -i "$@" >/dev/null
}

setup_accounting() {
  sacctmgr_ensure show cluster "$NAME" format=cluster -- add cluster "$NAME"
  sacctmgr_ensure show account holdem format=account -- add account holdem Cluster="$NAME" Description=local Organization=local
  sacctmgr_ensure show account other format=account -- add account other Cluster="$NAME" Description=local Organization=local
  local user users=(root)
  [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]] && users+=("$SUDO_USER")
  for user in "${users[@]}"; do
    sacctmgr_ensure show assoc cluster="$NAME" user="$user" account=holdem format=user -- \
      add user "$user" Account=holdem Cluster="$NAME"
    sacctmgr_ensure show assoc cluster="$NAME" user="$user" account=other format=user -- \
      add user "$user" Account=other Cluster="$NAME"
    sacctmgr -i modify user "$user" set DefaultAccount=holdem >/dev/null 2>&1 || true
  done
}

start_slurmctld() {
  start_daemon slurmctld slurmctld -D
  wait_until "slurmctld to answer (scontrol ping)" "$TIMEOUT" slurmctld "$STATE/log/slurmctld.log" \
    sh -c 'scontrol ping | grep -q UP'
}

start_slurmds() {
  local n=$1 i node
  for i in $(seq 1 "$n"); do
    node=$(node_name "$i")
    mkdir -p "$STATE/spool/$node"
    # nsenter --net (not `ip netns exec`, which hides /sys/fs/cgroup and makes slurmd fail);
    # a private UTS and mount namespace give the node its own hostname and /etc/hosts.
    start_daemon "slurmd-$node" nsenter --net="/run/netns/$(node_ns "$i")" unshare --uts --mount -- \
      sh -c "hostname $node && mount --bind '$STATE/etc/hosts' /etc/hosts && exec slurmd -D -N $node"
  done
}

nodes_idle() {
  local n=$1
  [[ $(sinfo -h -N -p debug -o '%N %T' 2>/dev/null | awk '$2 == "idle"' | wc -l) == "$n" ]]
}

write_cluster_env() {
  local n=$1 i nodes=() addrs=() addrs2=() nss=()
  for i in $(seq 1 "$n"); do
    nodes+=("$(node_name "$i")"); addrs+=("$(node_addr "$i")"); addrs2+=("$(node_addr2 "$i")"); nss+=("$(node_ns "$i")")
  done
  write_file "$STATE/cluster.env" 644 <<EOF
LOCAL_SLURM_NAME=$NAME
LOCAL_SLURM_STATE_DIR=$STATE
SLURM_CONF=$CONF
NODES="${nodes[*]}"
ADDRS="${addrs[*]}"
IFACE=eth0
ISOLATED_IFACE=eth1
ISOLATED_ADDRS="${addrs2[*]}"
NETNS="${nss[*]}"
CONTROLLER_ADDR=$SUBNET.1
PARTITIONS="debug long"
DEFAULT_PARTITION=debug
ACCOUNTS="holdem other"
DEFAULT_ACCOUNT=holdem
GPUS_PER_NODE=$GPUS_PER_NODE
CPUS_PER_NODE=$CPUS_PER_NODE
EOF
}

# ---------------------------------------------------------------- commands

all_daemons() {
  local n=$1 i
  echo munged mariadbd slurmdbd slurmctld
  for i in $(seq 1 "$n"); do echo "slurmd-$(node_name "$i")"; done
}

running_nodes() { cat "$STATE/run/nodes" 2>/dev/null || echo 0; }

# "up" (every recorded daemon runs), "partial" or "down"
cluster_state() {
  local n d up=0 total=0
  n=$(running_nodes)
  for d in $(all_daemons "$n"); do total=$((total + 1)); daemon_alive "$d" && up=$((up + 1)); done
  if ((n > 0 && up == total)); then echo up; elif ((up > 0)); then echo partial; else echo down; fi
}

cmd_up() {
  local n=$1 state
  state=$(cluster_state)
  if [[ $state == up && $(running_nodes) == "$n" ]]; then
    setup_second_interfaces "$n"  # a cluster started before eth1 existed gets it; nothing else changes
    write_cluster_env "$n"
    log "already up with $n nodes (no-op); SLURM_CONF=$CONF"
    return 0
  fi
  if [[ $state != down ]]; then
    log "cluster is $state with $(running_nodes) node(s); restarting it with $n"
    cmd_down 0
  fi
  local t0=$SECONDS
  install_packages
  mkdir -p "$STATE"; touch "$STATE/.local-slurm"
  write_configs "$n"
  echo "$n" | write_file "$STATE/run/nodes" 644
  setup_network "$n"
  link_etc_conf
  start_munge
  start_mariadb
  start_slurmdbd
  setup_accounting
  start_slurmctld
  start_slurmds "$n"
  wait_until "all $n nodes idle in sinfo (see sinfo -R)" "$TIMEOUT" slurmctld "$STATE/log/slurmctld.log" nodes_idle "$n"
  wait_until "sacct to answer" "$TIMEOUT" slurmdbd "$STATE/log/slurmdbd.log" sacct -n -X -a -S now-1minutes
  write_cluster_env "$n"
  log "up: $n nodes idle in $((SECONDS - t0))s; nodes $(node_name 1)..$(node_name "$n") at $(node_addr 1)..; partitions debug (default), long; accounts holdem (default), other"
  log "clients: SLURM_CONF=$CONF$([[ $ETC_LINK == 1 ]] && echo " (also linked from $ETC_CONF)")"
}

cancel_all_jobs() {
  daemon_alive slurmctld || return 0
  local jobs
  jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ') || return 0
  [[ -n ${jobs// /} ]] || return 0
  log "cancelling jobs: $jobs"
  # shellcheck disable=SC2086
  scancel $jobs 2>/dev/null || true
  local deadline=$((SECONDS + 20))
  while [[ -n $(squeue -h -o %A 2>/dev/null) ]] && ((SECONDS < deadline)); do sleep 0.2; done
  [[ -z $(squeue -h -o %A 2>/dev/null) ]] || log "jobs still listed after 20s; their processes are killed below"
}

cmd_down() {
  local purge=$1 pf
  if [[ ! -d $STATE ]]; then log "nothing to stop ($STATE does not exist)"; return 0; fi
  rm -f "$STATE/cluster.env"
  cancel_all_jobs
  # slurmctld before the slurmds, or it hangs on shutdown.
  stop_daemon slurmctld
  # Every slurmd we recorded, whatever the node count was.
  for pf in "$STATE"/run/slurmd-*.pid; do
    [[ -e $pf ]] && { pf=${pf##*/}; stop_daemon "${pf%.pid}"; }
  done
  kill_namespace_processes
  stop_daemon slurmdbd
  stop_daemon mariadbd
  stop_daemon munged
  teardown_network
  unlink_etc_conf
  rm -f "$STATE/run/nodes"
  if ((purge)); then
    [[ -e $STATE/.local-slurm ]] || fail "$STATE has no .local-slurm marker; not deleting it"
    rm -rf "$STATE"; log "deleted $STATE"
  fi
  log "down"
}

cmd_status() {
  local n d state pid
  n=$(running_nodes)
  state=$(cluster_state)
  echo "state: $state"
  echo "state dir: $STATE"
  echo "config: $CONF"
  for d in $(all_daemons "$n"); do
    pid=$(daemon_pid "$d")
    if daemon_alive "$d"; then echo "$d: running (pid $pid)"; else echo "$d: stopped"; fi
  done
  for i in $(seq 1 "$n"); do
    echo "node $(node_name "$i"): $(node_addr "$i") in netns $(node_ns "$i")$([[ -e /run/netns/$(node_ns "$i") ]] || echo ' (missing)'); isolated eth1 $(node_addr2 "$i")$(ip -n "$(node_ns "$i")" link show eth1 >/dev/null 2>&1 || echo ' (missing)')"
  done
  if daemon_alive slurmctld; then sinfo 2>&1 || true; fi
  case $state in up) return 0 ;; partial) return 1 ;; *) return 3 ;; esac
}

main() {
  local cmd=${1:-} argv=("$@")
  case $cmd in
    -h|--help|help) usage; return 0 ;;
    up|down|status) ;;
    '') usage_error "missing command (up [N] | down [--purge] | status)" ;;
    *) usage_error "unknown command '$cmd' (expected up [N] | down [--purge] | status)" ;;
  esac
  shift
  check_settings
  local n=2 purge=0
  case $cmd in
    up)
      (($# <= 1)) || usage_error "up takes at most one argument, the node count"
      n=${1:-2}
      if ! [[ $n =~ ^[0-9]+$ ]] || ((n < 1 || n > 50)); then
        usage_error "node count '$n' must be a number from 1 to 50"
      fi ;;
    down)
      (($# == 0)) || [[ $# == 1 && $1 == --purge ]] || usage_error "down takes only --purge" ;;
    status) (($# == 0)) || usage_error "status takes no arguments" ;;
  esac
  [[ $cmd == down ]] && (($#)) && purge=1
  require_root "${argv[@]}"
  # One up/down/status at a time per instance: several sessions may call `up` at once.
  local lock=/run/local-slurm-$NAME.lock
  exec 9>"$lock"
  flock -w "$TIMEOUT" 9 || fail "timed out after ${TIMEOUT}s waiting for the lock $lock (another local-slurm.sh is running)"
  [[ $cmd == up ]] && mkdir -p "$STATE/run" "$STATE/log"
  case $cmd in
    up) cmd_up "$n" ;;
    down) cmd_down "$purge" ;;
    status) cmd_status ;;
  esac
}

main "$@"
