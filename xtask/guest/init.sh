#!/bin/sh
# /init of the `cargo xtask vm-test` initramfs (busybox sh, PID 1).
#
# Loads the RDMA modules, brings up dummy0 (192.168.77.1/24) with rxe0 on it
# and a spare dummy1 (192.168.78.1/24, no rxe: tests may create one there),
# starts the kernel's nfsd on RDMA port 20149 (NFSv4 only; exported to the
# tests as RDMAXPRT_TEST_NFSD=192.168.77.1:20149) and loads the kernel NFS
# client's modules,
# runs every test listed in /tests/list serially with RDMAXPRT_TEST_DEVICE=rxe0,
# prints one "RESULT <name> PASS|FAIL" line per test and a final
# "SUMMARY pass=N fail=M", then powers off. Then the pairs of /tests/pairs
# (interop and benchmarks): a server in the background, a client in the
# foreground, each bounded; one RESULT line per pair. Programs built from
# the workspace's examples are in /examples/. Kernel command line knobs:
#   rdmaxprt.test_timeout=SECS  per-test bound (default 120)
#   rdmaxprt.pair_timeout=SECS  per-side bound of a pair (default 60)
#   rdmaxprt.shell=1            drop to a shell at the end instead (debugging)
/bin/busybox --install -s
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /tmp /run
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
echo /sbin/modprobe > /proc/sys/kernel/modprobe
# Registration pins memory (RLIMIT_MEMLOCK); and give pools some huge pages.
ulimit -l unlimited
echo 16 > /proc/sys/vm/nr_hugepages
echo "GUEST-UP uptime=$(cut -d' ' -f1 /proc/uptime)s kernel=$(uname -r)"

TEST_TIMEOUT=120
PAIR_TIMEOUT=60
SHELL_AT_END=0
for a in $(cat /proc/cmdline); do
  case $a in
    rdmaxprt.test_timeout=*) TEST_TIMEOUT=${a#rdmaxprt.test_timeout=} ;;
    rdmaxprt.pair_timeout=*) PAIR_TIMEOUT=${a#rdmaxprt.pair_timeout=} ;;
    rdmaxprt.shell=1) SHELL_AT_END=1 ;;
  esac
done

PASS=0
FAIL=0
finish() {
  echo
  echo "SUMMARY pass=$PASS fail=$FAIL uptime=$(cut -d' ' -f1 /proc/uptime)s"
  if [ "$SHELL_AT_END" = 1 ]; then exec setsid cttyhack sh; fi
  sync
  poweroff -f
}
setup_fail() {
  FAIL=$((FAIL+1))
  echo "RESULT setup/$1 FAIL"
  dmesg | grep -i -E 'rxe|infiniband|rdma|ib_' | tail -n 20
  finish
}

# rxe computes its ICRC with crc32 through the crypto API: load the crypto
# modules up front instead of relying on alias lookups. Failures of the
# optional accelerated variants are harmless.
for m in crc32_generic crc32-pclmul crc32c_generic crc32c-intel libcrc32c configfs \
         ib_core ib_uverbs ib_cm iw_cm rdma_cm rdma_ucm udp_tunnel ip6_udp_tunnel rdma_rxe dummy; do
  modprobe "$m" 2>/tmp/modprobe.err || echo "modprobe $m failed: $(cat /tmp/modprobe.err)"
done
[ -d /sys/module/rdma_rxe ] || setup_fail modules

# Debian's busybox-static prefers its own applets over $PATH, and its `ip`
# cannot add dummy links: call iproute2 by path.
IP=/usr/bin/ip
$IP link set lo up
# Loading `dummy` may already have created dummy0 (numdummies=1).
$IP link add dummy0 type dummy 2>/dev/null
$IP addr add 192.168.77.1/24 dev dummy0 && $IP link set dummy0 up || setup_fail net_dummy0
$IP link add dummy1 type dummy && $IP addr add 192.168.78.1/24 dev dummy1 && $IP link set dummy1 up || setup_fail net_dummy1
rdma link add rxe0 type rxe netdev dummy0 || setup_fail rxe0
# The IPv4-mapped GID appears asynchronously once the netdev is up with an address.
n=0
until grep -q '0000:0000:0000:0000:0000:ffff:c0a8:4d01' /sys/class/infiniband/rxe0/ports/1/gids/* 2>/dev/null; do
  n=$((n+1)); [ $n -gt 50 ] && setup_fail rxe0_gid
  sleep 0.1
done
# The index of that GID, for perftest's -x.
for f in /sys/class/infiniband/rxe0/ports/1/gids/*; do
  grep -q 'ffff:c0a8:4d01' "$f" 2>/dev/null && { RXE_GID=${f##*/}; break; }
done
export RXE_GID
echo "SETUP ok: rxe0 on dummy0 (192.168.77.1, gid index $RXE_GID), spare dummy1, uptime=$(cut -d' ' -f1 /proc/uptime)s"

# The kernel's nfsd on RDMA, for tests/kernel_nfsd.rs (facts in
# ../shared/notes/kernel-peers.md): NFSv4 only, which needs no rpcbind;
# versions before threads and portlist (EBUSY after). No rpc.mountd
# either: nfsd upcalls auth.unix.ip for every non-NULL call and drops the
# call ~5 s later unless the entry mountd would write is there. The kernel
# NFS client's modules (nfs, nfsv4, rpcrdma) are loaded too, for the
# kernel-client pair's mount(2). Port 20149, not NFS/RDMA's 20049: nfsd
# listens on any address, and the device tests and the kernel-client
# pair's server bind 20049 themselves.
NFSD_PORT=20149
setup_nfsd() {
  for m in sunrpc rpcrdma nfsd nfs nfsv3 nfsv4; do
    modprobe "$m" || { echo "modprobe $m failed"; return 1; }
  done
  mount -t nfsd nfsd /proc/fs/nfsd || return 1
  # Only the device tests use it: a run of pairs alone (vm-nfs-bench starts
  # the kernel's NFSv3 nfsd itself, guest/knfsd-v3.sh) leaves nfsd unstarted.
  [ -s /tests/list ] || return 0
  echo '-2 -3 +4 +4.1 +4.2' > /proc/fs/nfsd/versions || { echo "versions failed"; return 1; }
  echo 4 > /proc/fs/nfsd/threads || { echo "threads failed"; return 1; }
  echo "rdma $NFSD_PORT" > /proc/fs/nfsd/portlist || { echo "portlist failed"; return 1; }
  echo "nfsd 192.168.77.1 2147483647 rdmaxprt-vm" > /proc/net/rpc/auth.unix.ip/channel \
    || { echo "auth.unix.ip failed"; return 1; }
  grep -q "rdma $NFSD_PORT" /proc/fs/nfsd/portlist || { echo "portlist: $(cat /proc/fs/nfsd/portlist)"; return 1; }
}
if setup_nfsd > /tmp/nfsd.log 2>&1 && [ ! -s /tests/list ]; then
  echo "SETUP nfs modules loaded; nfsd not started (no device tests)"
elif [ -s /tests/list ] && grep -q "rdma $NFSD_PORT" /proc/fs/nfsd/portlist 2>/dev/null; then
  export RDMAXPRT_TEST_NFSD=192.168.77.1:$NFSD_PORT
  echo "SETUP nfsd: $(tr '\n' ' ' < /proc/fs/nfsd/portlist); versions $(cat /proc/fs/nfsd/versions); threads $(cat /proc/fs/nfsd/threads)"
else
  # Not fatal for the other tests; kernel_nfsd then skips, and a skip fails the run.
  FAIL=$((FAIL+1))
  echo "RESULT setup/nfsd FAIL"
  sed 's/^/| /' /tmp/nfsd.log
  dmesg | grep -i -E 'nfsd|svcrdma|rpcrdma|sunrpc' | tail -n 10
fi

export RDMAXPRT_TEST_DEVICE=rxe0
export RDMAXPRT_TEST_IP=192.168.77.1
export RDMAXPRT_TEST_NETDEV=dummy0
export RDMAXPRT_TEST_SPARE_NETDEV=dummy1
export RUST_BACKTRACE=1
cd /tmp
# /tests/list: one test per line, "name<TAB>path<TAB>args". Serially: rxe
# device tests must not overlap.
TAB=$(printf '\t')
while IFS="$TAB" read -r name path args; do
  [ -n "$name" ] || continue
  echo
  echo "==== $name ($path $args)"
  t0=$(cut -d' ' -f1 /proc/uptime)
  # shellcheck disable=SC2086 # args are split on purpose
  timeout "$TEST_TIMEOUT" "$path" $args </dev/null 2>&1
  rc=$?
  t1=$(cut -d' ' -f1 /proc/uptime)
  secs=$(echo "$t1 $t0" | awk '{printf "%.1f", $1-$2}')
  if [ $rc = 0 ]; then
    PASS=$((PASS+1)); echo "RESULT $name PASS (${secs}s)"
  else
    FAIL=$((FAIL+1)); echo "RESULT $name FAIL (rc=$rc, ${secs}s)"
    dmesg | grep -i -E 'rxe|infiniband|rdma|ib_' | tail -n 10
  fi
done < /tests/list

# The pairs wait for an rdma_cm id in LISTEN, and nfsd's would count: stop
# nfsd now that the tests are done; its listeners go with its threads.
if [ -n "$RDMAXPRT_TEST_NFSD" ]; then
  echo 0 > /proc/fs/nfsd/threads
  n=0
  while rdma resource show cm_id 2>/dev/null | grep -q LISTEN && [ $n -lt 50 ]; do n=$((n+1)); sleep 0.1; done
  echo "nfsd stopped: $(rdma resource show cm_id 2>/dev/null | grep -c LISTEN) rdma_cm ids still listening"
fi

# Pairs: "name<TAB>server<TAB>client<TAB>check" ("-" = none), run with sh -c.
# The client starts once something listens: an rdma_cm id in LISTEN
# (`rdma resource show cm_id`) or a TCP socket (perftest's exchange).
any_listener() {
  rdma resource show cm_id 2>/dev/null | grep -q LISTEN && return 0
  awk '$4 == "0A" { f = 1 } END { exit !f }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
show_log() { # name side rc file
  echo "---- $1 $2 (rc=$3)"
  case $1 in
    bench/*) sed "s|^|BENCH $1 $2: |" "$4" ;;
    *) tail -n 12 "$4" | sed "s/^/| /" ;;
  esac
}
SLOG=/tmp/pair.server.log
CLOG=/tmp/pair.client.log
export SLOG CLOG
while IFS="$TAB" read -r name scmd ccmd check; do
  [ -n "$name" ] || continue
  echo
  echo "==== $name (pair)"
  : > $SLOG
  : > $CLOG
  t0=$(cut -d' ' -f1 /proc/uptime)
  spid=
  if [ "$scmd" != - ]; then
    timeout "$PAIR_TIMEOUT" sh -c "$scmd" > $SLOG 2>&1 </dev/null &
    spid=$!
    n=0
    until any_listener; do
      n=$((n+1))
      [ $n -gt 150 ] && break
      kill -0 $spid 2>/dev/null || break
      sleep 0.1
    done
  fi
  timeout "$PAIR_TIMEOUT" sh -c "$ccmd" > $CLOG 2>&1 </dev/null
  crc=$?
  src=0
  if [ -n "$spid" ]; then
    # The server ends with the client's disconnect: a few seconds at most.
    n=0
    while kill -0 $spid 2>/dev/null && [ $n -lt 100 ]; do n=$((n+1)); sleep 0.1; done
    kill $spid 2>/dev/null
    wait $spid
    src=$?
  fi
  chk=0
  if [ $crc = 0 ] && [ $src = 0 ] && [ "$check" != - ] && [ -n "$check" ]; then
    sh -c "$check" >/tmp/pair.check.log 2>&1
    chk=$?
  fi
  t1=$(cut -d' ' -f1 /proc/uptime)
  secs=$(echo "$t1 $t0" | awk '{printf "%.1f", $1-$2}')
  [ -n "$spid" ] && show_log "$name" server $src $SLOG
  show_log "$name" client $crc $CLOG
  if [ $crc = 0 ] && [ $src = 0 ] && [ $chk = 0 ]; then
    PASS=$((PASS+1)); echo "RESULT $name PASS (${secs}s)"
  else
    FAIL=$((FAIL+1)); echo "RESULT $name FAIL (server rc=$src, client rc=$crc, check rc=$chk, ${secs}s)"
    [ $chk = 0 ] || { echo "---- check: $check"; tail -n 5 /tmp/pair.check.log | sed 's/^/| /'; }
    dmesg | grep -i -E 'rxe|infiniband|rdma|ib_' | tail -n 10
  fi
done < /tests/pairs
finish
