#!/bin/sh
# nfs3-files EXPORT_DIR SERVER_LOG [MOUNT_PORT]: the Linux kernel's NFS
# client (NFSv3 over RDMA, xprtrdma) moves real files through nfs_server
# (examples/nfs-server), which exports EXPORT_DIR on 192.168.77.1:20049
# and serves MOUNT v3 over TCP on MOUNT_PORT (20048), writing SERVER_LOG.
# In the guest as /usr/local/bin/nfs3-files (issue 12, part 2). Exit 0 iff
# every step below held; each prints one line (`ok ...` or `FAIL ...`).
#   - mount(2) `vers=3,proto=rdma,port=20049,mountproto=tcp,mountport=N`;
#   - files of 0, 1, 4095, 4096, 4097, 65536, 1 MiB + 1 and 16 MiB from
#     /dev/urandom, each written with dd buffered and with oflag=direct;
#     after `sync` and drop_caches read back buffered and with
#     iflag=direct: the sha256 of the source, of what the client reads and
#     of the export's file read directly on the server side all equal;
#   - 2,000 files created in one directory, `ls -l` lists them all, all
#     renamed into a second directory, removed, both directories rmdir'd;
#   - `df` of the mount reports a size;
#   - a small tree (directories, files of several sizes, a symbolic link,
#     a hard link) extracted with tar into the mount equals the source:
#     same paths, types, link targets, sha256 of every file, and the same
#     on the server side;
#   - umount succeeds, and the server's log then says `LIVE 0`.
# Prints `TIME step seconds` lines (guest uptime) for the wall time of
# each step, with the connections the server accepted so far. The whole
# output is also copied to the console as `NFS3` lines. NFS3_TRACE=1
# records the sunrpc, rpcrdma, nfs and rdma_cma trace events from the
# buffered writes on and copies those around the first DISCONNECTED (or
# the last 100) to the console as `KTRACE` lines, after the buffered
# writes and again if a step failed.
set -u
EXPORT=${1:?usage: nfs3-files EXPORT_DIR SERVER_LOG [MOUNT_PORT]}
SERVER_LOG=${2:?usage: nfs3-files EXPORT_DIR SERVER_LOG [MOUNT_PORT]}
MOUNT_PORT=${3:-20048}
IP=192.168.77.1
M=/mnt/nfs3
SRC=/tmp/nfs3-src
T=/sys/kernel/tracing
FAILS=0
fail() { echo "FAIL $*"; FAILS=$((FAILS+1)); }
now() { cut -d' ' -f1 /proc/uptime; }
T0=$(now)
LAST=$T0
accepted() { grep '^ACCEPTED' "$SERVER_LOG" | tail -n 1 | cut -d' ' -f2; }
lap() { t=$(now); echo "TIME $1 $(echo "$t $LAST" | awk '{printf "%.1f", $1-$2}') (server: $(accepted) connections accepted so far)"; LAST=$t; }
# trace_dump: the recorded events to the console: those around the first
# DISCONNECTED (the 60 before, 20 after), or the last 100 (without the
# rpc_task scheduling events).
trace_dump() {
  [ -n "${NFS3_TRACE:-}" ] || return 0
  grep -v '^#' $T/trace | grep -v -E 'rpc_task_(sleep|wakeup|run_action)|nfs_(set_cache|refresh_inode)' > /tmp/ktrace
  first=$(grep -n DISCONNECTED /tmp/ktrace | head -n 1 | cut -d: -f1)
  if [ -n "$first" ]; then
    sed -n "$((first > 60 ? first - 60 : 1)),$((first + 20))p" /tmp/ktrace
  else
    tail -n 100 /tmp/ktrace
  fi | cut -c1-220 | sed 's/^/KTRACE /' > /dev/console
  echo > $T/trace
}
if [ -n "${NFS3_TRACE:-}" ]; then
  [ -d $T/events ] || mount -t tracefs tracefs $T
  echo > $T/trace
  for e in sunrpc rpcrdma nfs rdma_cma; do echo 1 > $T/events/$e/enable 2>/dev/null; done
fi

# The server prints LISTENING once the rdma_cm listener is up (its TCP
# MOUNT port listens a moment earlier).
n=0
until grep -q '^LISTENING' "$SERVER_LOG"; do
  n=$((n+1)); [ $n -le 100 ] || { echo "FAIL server never listened"; exit 1; }
  sleep 0.1
done
OPTS="vers=3,proto=rdma,port=20049,mountproto=tcp,mountport=$MOUNT_PORT,mountvers=3,mountaddr=$IP,addr=$IP,nolock,soft,timeo=100,retrans=2"
/examples/nfs_mount nfs $IP:/export $M "$OPTS" || { echo "FAIL mount"; trace_dump; exit 1; }
echo "ok mounted: $(grep " $M " /proc/mounts)"
lap mount

# --- file matrix -----------------------------------------------------------
SIZES="0 1 4095 4096 4097 65536 1048577 16777216"
rm -rf $SRC; mkdir -p $SRC
for s in $SIZES; do
  dd if=/dev/urandom of=$SRC/f$s bs=$((s > 0 ? s : 1)) count=$((s > 0)) iflag=fullblock 2>/dev/null \
    || fail "dd from /dev/urandom, $s bytes"
  [ "$(stat -c %s $SRC/f$s)" = $s ] || fail "source f$s is $(stat -c %s $SRC/f$s) bytes"
done
lap sources
[ -z "${NFS3_TRACE:-}" ] || echo > $T/trace
for s in $SIZES; do
  dd if=$SRC/f$s of=$M/buf-$s bs=65536 2>/dev/null || fail "buffered dd write of $s bytes"
done
sync
lap write-buffered
trace_dump
for s in $SIZES; do
  dd if=$SRC/f$s of=$M/dir-$s bs=1M oflag=direct 2>/dev/null || fail "O_DIRECT dd write of $s bytes"
done
lap write-direct
sync
echo 3 > /proc/sys/vm/drop_caches
for s in $SIZES; do
  want=$(sha256sum < $SRC/f$s | cut -d' ' -f1)
  for k in buf dir; do
    f=$k-$s
    got=$(sha256sum < $M/$f | cut -d' ' -f1)
    direct=$(dd if=$M/$f bs=1M iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
    server=$(sha256sum < $EXPORT/$f | cut -d' ' -f1)
    size=$(stat -c %s $M/$f)
    if [ "$got" = "$want" ] && [ "$direct" = "$want" ] && [ "$server" = "$want" ] && [ "$size" = $s ]; then
      echo "ok $f: $s bytes, sha256 ${want%${want#????????????????}} (client buffered, client O_DIRECT, server file)"
    else
      fail "$f: size $size want $s; sha256 want $want client $got direct $direct server $server"
    fi
  done
done
lap read-back

# --- one directory of 2,000 files ------------------------------------------
mkdir $M/many $M/many2 || fail "mkdir"
i=0
while [ $i -lt 2000 ]; do
  : > $M/many/file-$i || { fail "create many/file-$i"; break; }
  i=$((i+1))
done
lap create-2000
listed=$(ls -l $M/many | grep -c ' file-')
[ "$listed" = 2000 ] && echo "ok ls -l lists 2000 files" || fail "ls -l lists $listed files, not 2000"
[ "$(ls $EXPORT/many | wc -l)" = 2000 ] || fail "the export has $(ls $EXPORT/many | wc -l) files in many/"
lap ls-2000
mv $M/many/* $M/many2/ || fail "mv (RENAME) of 2000 files"
[ "$(ls $M/many | wc -l)" = 0 ] && [ "$(ls $M/many2 | wc -l)" = 2000 ] \
  && [ "$(ls $EXPORT/many2 | wc -l)" = 2000 ] && echo "ok renamed 2000 files into many2/" \
  || fail "after mv: many $(ls $M/many | wc -l), many2 $(ls $M/many2 | wc -l), export many2 $(ls $EXPORT/many2 | wc -l)"
lap rename-2000
rm -f $M/many2/* || fail "rm of 2000 files"
rmdir $M/many $M/many2 || fail "rmdir"
[ ! -e $EXPORT/many ] && [ ! -e $EXPORT/many2 ] && echo "ok removed 2000 files and both directories" \
  || fail "many/ or many2/ still in the export"
lap remove-2000

# --- df ---------------------------------------------------------------------
df_line=$(df -k $M | tail -n 1)
set -- $df_line
if [ "${2:-0}" -gt 0 ] 2>/dev/null; then echo "ok df: $df_line"; else fail "df: $df_line"; fi

# --- tar tree ---------------------------------------------------------------
rm -rf /tmp/tree-src; mkdir -p /tmp/tree-src/tree/src/sub/deeper /tmp/tree-src/tree/doc /tmp/tree-src/tree/empty
j=0
for s in 0 3 100 1000 4096 5000 20000 70000 300000; do
  for d in src src/sub src/sub/deeper doc; do
    dd if=/dev/urandom of=/tmp/tree-src/tree/$d/f$j.dat bs=$((s > 0 ? s : 1)) count=$((s > 0)) iflag=fullblock 2>/dev/null
    j=$((j+1))
  done
done
ln -s sub/deeper/f2.dat /tmp/tree-src/tree/src/link-to-f2
ln /tmp/tree-src/tree/doc/f3.dat /tmp/tree-src/tree/doc/hardlink-to-f3
chmod 755 /tmp/tree-src/tree/src/f0.dat
(cd /tmp/tree-src && tar -cf /tmp/tree.tar tree) || fail "tar -c"
(cd $M && tar -xf /tmp/tree.tar) || fail "tar -x into the mount"
sync
echo 3 > /proc/sys/vm/drop_caches
manifest() { # DIR: one line per entry: type, mode, size (files), sha256 or link target
  (cd "$1" && find tree | sort | while read -r p; do
    if [ -L "$p" ]; then echo "$p l $(readlink "$p")"
    elif [ -d "$p" ]; then echo "$p d $(stat -c %a "$p")"
    else echo "$p f $(stat -c '%a %s %h' "$p") $(sha256sum < "$p" | cut -d' ' -f1)"
    fi
  done)
}
manifest /tmp/tree-src > /tmp/tree.src
manifest $M > /tmp/tree.client
manifest $EXPORT > /tmp/tree.server
entries=$(wc -l < /tmp/tree.src)
if cmp -s /tmp/tree.src /tmp/tree.client && cmp -s /tmp/tree.src /tmp/tree.server; then
  echo "ok tar tree: $entries entries equal (paths, types, modes, sizes, link counts, sha256, link targets) on client and server"
else
  fail "tar tree differs"; diff /tmp/tree.src /tmp/tree.client | head -n 10; diff /tmp/tree.src /tmp/tree.server | head -n 10
fi
rm -rf $M/tree || fail "rm -rf tree"
lap tar
for s in $SIZES; do rm -f $M/buf-$s $M/dir-$s || fail "rm buf-$s dir-$s"; done
left=$(ls -A $M | wc -l)
[ "$left" = 0 ] || fail "$left entries left in the export: $(ls -A $M | head -n 5 | tr '\n' ' ')"

# --- umount -----------------------------------------------------------------
[ $FAILS = 0 ] || trace_dump
umount $M && echo "ok umount" || { fail "umount"; umount -f $M; }
n=0
until [ "$(grep '^LIVE' "$SERVER_LOG" | tail -n 1)" = "LIVE 0" ]; do
  n=$((n+1)); [ $n -le 50 ] || { fail "the server still has a live transport 5 s after umount"; break; }
  sleep 0.1
done
lap umount
echo "TIME total $(echo "$(now) $T0" | awk '{printf "%.1f", $1-$2}')"
# The pair shows the last lines of this output: the whole of it, and the
# kernel's NFS/RPC messages, go to the console (the VM's serial log).
if [ -n "${CLOG:-}" ]; then sed 's/^/NFS3 /' "$CLOG" > /dev/console; fi
dmesg | grep -i -E 'nfs|rpcrdma|sunrpc|svcrdma' | tail -n 20 | sed 's/^/NFS3 dmesg: /' > /dev/console
[ $FAILS = 0 ] && echo PASS || { echo "FAILED $FAILS"; exit 1; }
