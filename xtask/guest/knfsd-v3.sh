#!/bin/sh
# knfsd-v3 start DIR | stop: the Linux kernel's nfsd serving DIR (a fresh
# tmpfs mounted there) over NFSv3 on RDMA port 20049, with rpc.mountd
# answering MOUNT v3 over TCP on port 20048: the same address, ports and
# client options as examples/nfs-server in xtask/vm-nfs-bench.txt, so
# guest/nfs3-bench.sh runs unchanged against either (issue 12, part 3). In
# the guest as /usr/local/bin/knfsd-v3.
#
# Why the real daemons (Debian's rpcbind and nfs-kernel-server, fetched with
# apt-get download like the rest of the guest): NFSv3 in nfsd registers with
# rpcbind when its threads start (ECONNREFUSED without it, see
# ../shared/notes/kernel-peers.md), and rpc.mountd both answers the
# client's MOUNT call with the export's root file handle and fills the
# kernel's export caches (auth.unix.ip, nfsd.export, nfsd.fh) on upcall, as
# on any Linux NFS server. 4 nfsd threads, like nfs_server's 4 workers.
# Logs: /tmp/rpcbind.log, /tmp/mountd.log.
set -u
cmd=${1:?usage: knfsd-v3 start DIR | stop}
D=/proc/fs/nfsd
case $cmd in
start)
  DIR=${2:?usage: knfsd-v3 start DIR}
  mkdir -p "$DIR" && mount -t tmpfs tmpfs "$DIR" || { echo "FAIL tmpfs on $DIR"; exit 1; }
  grep -q '^_rpc:' /etc/passwd || echo '_rpc:x:108:65534::/run/rpcbind:/bin/false' >> /etc/passwd
  grep -q '^nogroup:' /etc/group || echo 'nogroup:x:65534:' >> /etc/group
  grep -q 'rdmaxprt-vm' /etc/hosts || echo '192.168.77.1 rdmaxprt-vm' >> /etc/hosts
  [ -e /etc/nsswitch.conf ] || printf 'passwd: files\ngroup: files\nhosts: files\n' > /etc/nsswitch.conf
  [ -e /etc/mtab ] || ln -s /proc/mounts /etc/mtab
  mkdir -p /run/rpcbind /var/lib/nfs
  # The kernel's rpcbind client dials /var/run/rpcbind.sock (then
  # 127.0.0.1:111); Debian's /var/run is /run.
  [ -e /var/run ] || ln -s /run /var/run
  chown _rpc /run/rpcbind 2>/dev/null
  : > /var/lib/nfs/rmtab
  [ -d $D ] && grep -q ' /proc/fs/nfsd ' /proc/mounts || mount -t nfsd nfsd $D || { echo "FAIL mount nfsd"; exit 1; }
  rpcbind -f -w > /tmp/rpcbind.log 2>&1 &
  n=0
  until [ -S /run/rpcbind.sock ]; do
    n=$((n+1)); [ $n -le 100 ] || { echo "FAIL rpcbind did not start"; cat /tmp/rpcbind.log; exit 1; }
    sleep 0.1
  done
  echo "$DIR 192.168.77.0/24(rw,sync,no_root_squash,insecure,no_subtree_check,fsid=1)" > /etc/exports
  exportfs -r || { echo "FAIL exportfs -r"; exit 1; }
  # Versions and the block size before threads and portlist (EBUSY
  # after): v3 only; READ/WRITE up to 1 MiB like nfs_server's rtmax/wtmax
  # (nfsd's own default on a 1 GiB guest is smaller: 16 MiB took 147
  # WRITEs instead of 16).
  echo '-2 +3 -4' > $D/versions || { echo "FAIL versions"; exit 1; }
  echo 1048576 > $D/max_block_size || { echo "FAIL max_block_size"; exit 1; }
  rpc.mountd -F -p 20048 > /tmp/mountd.log 2>&1 &
  if ! echo 4 > $D/threads; then
    echo "FAIL threads; rpcbind log: $(cat /tmp/rpcbind.log)"
    rpcinfo -p 127.0.0.1 2>&1 | head -n 20
    netstat -lnx 2>&1 | grep rpcbind
    exit 1
  fi
  echo 'rdma 20049' > $D/portlist || { echo "FAIL portlist"; exit 1; }
  n=0
  until awk '$2 ~ /:4E50$/ && $4 == "0A" { f = 1 } END { exit !f }' /proc/net/tcp; do
    n=$((n+1)); [ $n -le 100 ] || { echo "FAIL mountd does not listen on 20048"; cat /tmp/mountd.log; exit 1; }
    sleep 0.1
  done
  echo "KNFSD versions $(cat $D/versions); max_block_size $(cat $D/max_block_size); threads $(cat $D/threads); portlist $(tr '\n' ' ' < $D/portlist); exports $(exportfs -v | tr -s ' \t\n' ' ')"
  ;;
stop)
  echo 0 > $D/threads
  for p in $(pidof rpc.mountd) $(pidof rpcbind); do kill "$p"; done
  exportfs -ua
  ;;
*)
  echo "usage: knfsd-v3 start DIR | stop"; exit 2 ;;
esac
