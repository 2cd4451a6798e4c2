#!/bin/sh
# kclient-mount PORT SERVER_LOG: the Linux kernel's NFS client (xprtrdma)
# against an RPC server on 192.168.77.1:PORT (rdma_cm) that answers NULL and
# PROC_UNAVAIL to everything else (issue 9, item 9b). In the guest as
# /usr/local/bin/kclient-mount, for a vm-tests.txt pair whose server writes
# SERVER_LOG ($SLOG). Exit 0 iff:
#   - mount(2) of `vers=4.1,proto=rdma,port=PORT` fails with EIO within 2 s
#     (/examples/nfs_mount, built from rdmaxprt-rxe's examples);
#   - rxe0's RNR counters (hw_counters send_rnr_err, rcvd_rnr_err) are the
#     same after as before: the connection needed no RNR retry;
#   - the client negotiated 4096/4096 inline thresholds (RFC 8797), as its
#     xprtrdma_inline_thresh trace event says;
#   - SERVER_LOG has a FREED line within 1 s of the mount's return: the
#     server took the transport down after the client disconnected.
set -u
PORT=${1:?usage: kclient-mount PORT SERVER_LOG}
SERVER_LOG=${2:?usage: kclient-mount PORT SERVER_LOG}
IP=192.168.77.1
T=/sys/kernel/tracing
EV=$T/events/rpcrdma/xprtrdma_inline_thresh
[ -d $T/events ] || mount -t tracefs tracefs $T || { echo "FAIL: no tracefs"; exit 1; }
echo > $T/trace
echo 1 > $EV/enable || { echo "FAIL: cannot enable $EV"; exit 1; }
/examples/nfs_mount --expect-errno EIO --within 2 --rnr-unchanged rxe0 \
  nfs4 $IP:/ /mnt/kclient \
  "vers=4.1,proto=rdma,port=$PORT,addr=$IP,clientaddr=$IP,soft,timeo=20,retrans=1"
rc=$?
echo 0 > $EV/enable
echo "trace: $(grep -o 'neg send/recv=[0-9]*/[0-9]*' $T/trace | sort -u | tr '\n' ' ')"
[ $rc = 0 ] || exit 1
n=0
until grep -q FREED "$SERVER_LOG"; do
  n=$((n+1))
  [ $n -le 10 ] || { echo "FAIL: no FREED line in $SERVER_LOG within 1 s"; exit 1; }
  sleep 0.1
done
echo "server: $(grep FREED "$SERVER_LOG" | head -n 1)"
grep -q 'neg send/recv=4096/4096' $T/trace || { echo "FAIL: thresholds not negotiated to 4096/4096"; exit 1; }
echo "PASS"
