#!/bin/sh
# kclient-mount PORT SERVER_LOG: the Linux kernel's NFS client (xprtrdma)
# against an RPC server on 192.168.77.1:PORT (rdma_cm) that answers NULL and
# PROC_UNAVAIL to everything else (issue 9, item 9b). In the guest as
# /usr/local/bin/kclient-mount, for a vm-tests.txt pair whose server writes
# SERVER_LOG ($SLOG). Exit 0 iff:
#   - mount(2) of `vers=4.1,proto=rdma,port=PORT` fails with EIO within 2 s
#     (/examples/nfs_mount, built from rdmaxprt-rxe's examples; the bound
#     is $KCLIENT_WITHIN seconds if set: under QEMU TCG the mount's rdma_cm
#     connect alone takes 0.3-2.5 s depending on the host's load);
#   - rxe0's RNR counters (hw_counters send_rnr_err, rcvd_rnr_err) are the
#     same after as before: the connection needed no RNR retry;
#   - the client negotiated 4096/4096 inline thresholds (RFC 8797), as its
#     xprtrdma_inline_thresh trace event says;
#   - within 1 s of the mount's return, SERVER_LOG (rpc_server's output)
#     shows the connection accepted and then `LIVE 0`: the server took the
#     transport down after the client disconnected.
# KCLIENT_TRACE=1 also records the sunrpc, rpcrdma, nfs4 and rdma_cma events
# during the mount and copies them to /dev/console as `KTRACE` lines.
set -u
PORT=${1:?usage: kclient-mount PORT SERVER_LOG}
SERVER_LOG=${2:?usage: kclient-mount PORT SERVER_LOG}
IP=192.168.77.1
T=/sys/kernel/tracing
EV=$T/events/rpcrdma/xprtrdma_inline_thresh
[ -d $T/events ] || mount -t tracefs tracefs $T || { echo "FAIL: no tracefs"; exit 1; }
echo > $T/trace
echo 1 > $EV/enable || { echo "FAIL: cannot enable $EV"; exit 1; }
if [ -n "${KCLIENT_TRACE:-}" ]; then echo 1 > $T/events/sunrpc/enable; echo 1 > $T/events/rpcrdma/enable; echo 1 > $T/events/nfs4/enable; echo 1 > $T/events/rdma_cma/enable 2>/dev/null; fi
/examples/nfs_mount --expect-errno EIO --within "${KCLIENT_WITHIN:-2}" --rnr-unchanged rxe0 \
  nfs4 $IP:/ /mnt/kclient \
  "vers=4.1,proto=rdma,port=$PORT,addr=$IP,clientaddr=$IP,soft,timeo=20,retrans=1"
rc=$?
echo 0 > $EV/enable
if [ -n "${KCLIENT_TRACE:-}" ]; then
  echo 0 > $T/events/enable
  grep -v '^#' $T/trace | grep -v -E 'post_recv|svc_' | cut -c1-200 | head -n 150 | sed 's/^/KTRACE /' > /dev/console
fi
echo "trace: $(grep -o 'neg send/recv=[0-9]*/[0-9]*' $T/trace | sort -u | tr '\n' ' ')"
[ $rc = 0 ] || exit 1
# rpc_server prints `T ACCEPTED n` and `T LIVE n` whenever they change:
# freed = a connection was accepted and the last LIVE since then says 0.
freed() {
  awk '$2 == "ACCEPTED" && $3 > 0 { a = 1; seen = 0 }
       $2 == "LIVE" { live = $3; if (a) seen = 1 }
       END { exit !(a && seen && live == 0) }' "$SERVER_LOG"
}
n=0
until freed; do
  n=$((n+1))
  [ $n -le 10 ] || { echo "FAIL: the server still has a live transport 1 s after the mount returned"; tail -n 5 "$SERVER_LOG"; exit 1; }
  sleep 0.1
done
echo "server: $(grep -E 'ACCEPTED|LIVE' "$SERVER_LOG" | tail -n 2 | tr '\n' ' ')"
grep -q 'neg send/recv=4096/4096' $T/trace || { echo "FAIL: thresholds not negotiated to 4096/4096"; exit 1; }
echo "PASS"
