#!/bin/sh
# nfs3-bench LABEL SERVER_LOG [PORT] [MOUNT_PORT]: a small NFSv3-over-RDMA
# workload through the Linux kernel's NFS client against the server on
# 192.168.77.1:PORT (default 20049; MOUNT v3 over TCP on MOUNT_PORT,
# default 20048), in the guest as /usr/local/bin/nfs3-bench (issue 12,
# part 3). The same client options for every server. Prints one
# `NFS3BENCH LABEL workload value unit rpcs cpu_us_per_rpc guest_us_per_rpc
# (secs)` line per workload:
#   seq-write  dd of 64 MiB, bs=1M, oflag=direct           (MB/s)
#   seq-read   dd of that file, bs=1M, iflag=direct        (MB/s)
#   read-8k    2,000 direct 8 KiB reads in one dd          (ops/s)
#   rand-8k    200 dd processes, each one direct 8 KiB read at a random
#              offset (includes a process start each)      (ops/s)
#   metadata   create, stat (ls -l), remove 1,000 files     (ops/s, 3 per file)
# NFS3BENCH_QUICK=1: 16 MiB, 500 reads, 50 random reads, 250 files.
# NFS3BENCH_EXPORT: the path to mount (default /export, nfs_server's).
# Exit 1 if any step failed (a `FAIL` line says which).
# rpcs: the client's NFS RPCs during the workload (/proc/net/rpc/nfs);
# cpu_us_per_rpc: the server's user+system CPU time per RPC, from
# /proc/PID/stat of every process whose name matches the extended regular
# expression $NFS3BENCH_COMM (default nfs_server, whose process counts all
# its threads; for the kernel's server its nfsd threads and the ib-comp-wq
# kworkers where svcrdma handles completions), looked up at the start of
# each workload; guest_us_per_rpc: all
# busy CPU time of the guest (/proc/stat: client, rxe, softirqs, kworkers
# and server together) per RPC. SERVER_LOG `-`: no server log to wait for
# (the kernel's nfsd); then /proc/net/rpc/nfsd's proc3 calls are printed
# too, as `NFSDCALLS LABEL workload N`.
set -u
LABEL=${1:?usage: nfs3-bench LABEL SERVER_LOG [PORT] [MOUNT_PORT]}
SERVER_LOG=${2:?usage: nfs3-bench LABEL SERVER_LOG [PORT] [MOUNT_PORT]}
PORT=${3:-20049}
MOUNT_PORT=${4:-20048}
COMM=${NFS3BENCH_COMM:-nfs_server}
IP=192.168.77.1
M=/mnt/nfs3bench
EXPORT=${NFS3BENCH_EXPORT:-/export}
FAILED=0
fail() { echo "FAIL $*"; FAILED=1; }
if [ -n "${NFS3BENCH_QUICK:-}" ]; then MB=16 READS=500 RAND=50 FILES=250; else MB=64 READS=2000 RAND=200 FILES=1000; fi
if [ "$SERVER_LOG" != - ]; then
  n=0
  until grep -q '^LISTENING' "$SERVER_LOG"; do
    n=$((n+1)); [ $n -le 100 ] || { echo "FAIL server never listened"; exit 1; }
    sleep 0.1
  done
fi
# The server's processes (one process for ours; kernel threads for the
# kernel's).
server_pids() { grep -lE "^[0-9]+ \(($COMM)\) " /proc/[0-9]*/stat 2>/dev/null | cut -d/ -f3 | tr '\n' ' '; }
PIDS=$(server_pids)
[ -n "$PIDS" ] || { echo "FAIL no process named $COMM"; exit 1; }
HZ=100
now() { cut -d' ' -f1 /proc/uptime; }
# Client NFS RPCs so far: the sum of the proc3 counters.
rpcs() { awk '$1 == "proc3" { s = 0; for (i = 3; i <= NF; i++) s += $i; print s }' /proc/net/rpc/nfs; }
# The kernel nfsd's NFSv3 calls so far (0 without nfsd).
srpcs() { awk '$1 == "proc3" { s = 0; for (i = 3; i <= NF; i++) s += $i; print s } END { if (!NR) print 0 }' /proc/net/rpc/nfsd 2>/dev/null || echo 0; }
# Server CPU ticks so far (utime + stime; the names have no spaces).
ticks() { for p in $PIDS; do cat /proc/$p/stat 2>/dev/null; done | awk '{ s += $14 + $15 } END { print s + 0 }'; }
# Busy ticks of the whole guest (all but idle and iowait).
gticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
begin() {
  PIDS=$(server_pids)
  echo "server processes ($COMM): $PIDS"
  T0=$(now); R0=$(rpcs); C0=$(ticks); G0=$(gticks); S0=$(srpcs)
}
# end WORKLOAD AMOUNT UNIT: AMOUNT (bytes or ops) over the elapsed time.
end() {
  t=$(now); r=$(rpcs); c=$(ticks); g=$(gticks); s=$(srpcs)
  echo "$1 $2 $3 $T0 $t $R0 $r $C0 $c $HZ $LABEL $G0 $g" | awk '{
    secs = $5 - $4; if (secs <= 0) secs = 0.01
    rate = ($3 == "MB/s") ? $2 / 1e6 / secs : $2 / secs
    n = $7 - $6; cpu = ($9 - $8) * 1e6 / $10; g = ($13 - $12) * 1e6 / $10
    printf "NFS3BENCH %s %s %.1f %s %d %.0f %.0f (%.1f s)\n", $11, $1, rate, $3, n, n ? cpu / n : 0, n ? g / n : 0, secs }'
  [ "$SERVER_LOG" != - ] || echo "NFSDCALLS $LABEL $1 $((s - S0))"
}
OPTS="vers=3,proto=rdma,port=$PORT,mountproto=tcp,mountport=$MOUNT_PORT,mountvers=3,mountaddr=$IP,addr=$IP,nolock,soft,timeo=600,retrans=2"
/examples/nfs_mount nfs $IP:$EXPORT $M "$OPTS" || { echo "FAIL mount"; exit 1; }
sync; echo 3 > /proc/sys/vm/drop_caches
begin; dd if=/dev/zero of=$M/big bs=1M count=$MB oflag=direct 2>/dev/null || fail "seq-write"
end seq-write $((MB * 1048576)) MB/s
begin; dd if=$M/big of=/dev/null bs=1M iflag=direct 2>/dev/null || fail "seq-read"
end seq-read $((MB * 1048576)) MB/s
begin; dd if=$M/big of=/dev/null bs=8k count=$READS iflag=direct 2>/dev/null || fail "read-8k"
end read-8k $READS ops/s
begin
i=0
while [ $i -lt $RAND ]; do
  dd if=$M/big of=/dev/null bs=8k count=1 skip=$((RANDOM % (MB * 128))) iflag=direct 2>/dev/null || fail "rand-8k"
  i=$((i+1))
done
end rand-8k $RAND ops/s
mkdir $M/meta
begin
i=0
while [ $i -lt $FILES ]; do : > $M/meta/f$i; i=$((i+1)); done
[ "$(ls -l $M/meta | grep -c ' f[0-9]')" = $FILES ] || fail "metadata: ls -l did not list $FILES files"
rm -f $M/meta/*
end metadata $((FILES * 3)) ops/s
rmdir $M/meta; rm -f $M/big
# Where the guest's CPU went over the whole run: the 10 busiest threads
# (server threads, nfsd, kworkers, softirq, the client's processes), CPU
# ticks since they started.
cat /proc/[0-9]*/task/[0-9]*/stat 2>/dev/null \
  | sed -E 's/^[0-9]+ \((.*)\) (.*)$/\1|\2/' \
  | awk -F'|' '{ split($2, f, " "); print f[12] + f[13], $1 }' \
  | sort -rn | head -n 10 | sed "s/^/TOPCPU $LABEL /"
umount $M || fail "umount"
[ $FAILED = 0 ] || exit 1
echo DONE
