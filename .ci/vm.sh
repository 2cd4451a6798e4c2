#!/bin/bash
# .ci/vm.sh - run the device tests on Soft-RoCE (rdma_rxe) in a QEMU VM.
#
# Installs the host packages the harness and rdma-sys need (Debian 12, root),
# then runs `cargo run -p xtask -- vm-test`, which downloads the Debian
# kernel and the guest's rdma userspace with `apt-get download` (cached in
# target/vm-cache/), boots QEMU (TCG) and prints one RESULT line per test
# binary and per interop pair of xtask/vm-tests.txt (our rping example
# against rdma-core's rping, both ways). vm-bench stays out of CI (noisy).
# Exit status: the xtask's (non-zero on any failure, skip or timeout).
#   bash .ci/vm.sh [extra vm-test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
PKGS="qemu-system-x86 busybox-static cpio kmod xz-utils libibverbs-dev librdmacm-dev pkg-config libclang-dev"
need=()
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
# apt-cache (kernel package lookup) needs fresh lists even when nothing is missing.
if [ ${#need[@]} -gt 0 ] || [ -z "$(find /var/lib/apt/lists -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
  apt-get update -qq
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "vm.sh: apt-get install ${need[*]}"
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The 1,000 connect/disconnect cycles pair needs minutes under TCG.
exec cargo run -q -p xtask -- vm-test --pair-timeout 300 --timeout 1800 "$@"
