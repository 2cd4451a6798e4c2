#!/bin/sh
# nfs3-bench LABEL SERVER_LOG [PORT] [MOUNT_PORT]: a small NFSv3-over-RDMA
# workload through the Linux kernel's NFS client against the server on
# 192.168.77.1:PORT (default 20049; MOUNT v3 over TCP on MOUNT_PORT,
# default 20048), in the guest as /usr/local/bin/nfs3-bench (issue 12,
# part 3). Prints one `NFS3BENCH LABEL workload value unit rpcs cpu_us_per_rpc`
# line per workload:
#   seq-write  dd of 64 MiB, bs=1M, oflag=direct           (MB/s)
#   seq-read   dd of that file, bs=1M, iflag=direct        (MB/s)
#   read-8k    2,000 direct 8 KiB reads in one dd          (ops/s)
#   rand-8k    200 dd processes, each one direct 8 KiB read at a random
#              offset (includes a process start each)      (ops/s)
#   metadata   create, stat (ls -l), remove 1,000 files     (ops/s, 3 per file)
# rpcs: the client's NFS RPCs during the workload (/proc/net/rpc/nfs);
# cpu_us_per_rpc: the server process's user+system CPU time (from
# /proc/PID/stat, PID of the process named nfs_server) per RPC.
set -u
LABEL=${1:?usage: nfs3-bench LABEL SERVER_LOG [PORT] [MOUNT_PORT]}
SERVER_LOG=${2:?usage: nfs3-bench LABEL SERVER_LOG [PORT] [MOUNT_PORT]}
PORT=${3:-20049}
MOUNT_PORT=${4:-20048}
IP=192.168.77.1
M=/mnt/nfs3bench
n=0
until grep -q '^LISTENING' "$SERVER_LOG"; do
  n=$((n+1)); [ $n -le 100 ] || { echo "FAIL server never listened"; exit 1; }
  sleep 0.1
done
PID=$(pidof nfs_server | cut -d' ' -f1)
[ -n "$PID" ] || { echo "FAIL no nfs_server process"; exit 1; }
HZ=100
now() { cut -d' ' -f1 /proc/uptime; }
# Client NFS RPCs so far: the sum of the proc3 counters.
rpcs() { awk '$1 == "proc3" { s = 0; for (i = 3; i <= NF; i++) s += $i; print s }' /proc/net/rpc/nfs; }
# Server CPU ticks so far (utime + stime; the name has no spaces).
ticks() { awk '{ print $14 + $15 }' /proc/$PID/stat; }
begin() { T0=$(now); R0=$(rpcs); C0=$(ticks); }
# end WORKLOAD AMOUNT UNIT: AMOUNT (bytes or ops) over the elapsed time.
end() {
  t=$(now); r=$(rpcs); c=$(ticks)
  echo "$1 $2 $3 $T0 $t $R0 $r $C0 $c $HZ $LABEL" | awk '{
    secs = $5 - $4; if (secs <= 0) secs = 0.01
    rate = ($3 == "MB/s") ? $2 / 1e6 / secs : $2 / secs
    n = $7 - $6; cpu = ($9 - $8) * 1e6 / $10
    printf "NFS3BENCH %s %s %.1f %s %d %.0f (%.1f s)\n", $11, $1, rate, $3, n, n ? cpu / n : 0, secs }'
}
OPTS="vers=3,proto=rdma,port=$PORT,mountproto=tcp,mountport=$MOUNT_PORT,mountvers=3,mountaddr=$IP,addr=$IP,nolock,soft,timeo=600,retrans=2"
/examples/nfs_mount nfs $IP:/export $M "$OPTS" || { echo "FAIL mount"; exit 1; }
sync; echo 3 > /proc/sys/vm/drop_caches
begin; dd if=/dev/zero of=$M/big bs=1M count=64 oflag=direct 2>/dev/null || echo "FAIL seq-write"
end seq-write 67108864 MB/s
begin; dd if=$M/big of=/dev/null bs=1M iflag=direct 2>/dev/null || echo "FAIL seq-read"
end seq-read 67108864 MB/s
begin; dd if=$M/big of=/dev/null bs=8k count=2000 iflag=direct 2>/dev/null || echo "FAIL read-8k"
end read-8k 2000 ops/s
begin
i=0
while [ $i -lt 200 ]; do
  dd if=$M/big of=/dev/null bs=8k count=1 skip=$((RANDOM % 8192)) iflag=direct 2>/dev/null || echo "FAIL rand-8k"
  i=$((i+1))
done
end rand-8k 200 ops/s
mkdir $M/meta
begin
i=0
while [ $i -lt 1000 ]; do : > $M/meta/f$i; i=$((i+1)); done
[ "$(ls -l $M/meta | grep -c ' f[0-9]')" = 1000 ] || echo "FAIL metadata: ls -l did not list 1000 files"
rm -f $M/meta/*
end metadata 3000 ops/s
rmdir $M/meta; rm -f $M/big
umount $M || echo "FAIL umount"
echo DONE
