#!/usr/bin/env bash
# The float16 cooperative-matrix tests on a software adapter that has cooperative matrices:
# lavapipe from Mesa 26 (Debian 13's trixie-backports) offers VK_KHR_cooperative_matrix with
# 8×8×8 float16 · float16 → float32, where Debian 12's Mesa 22.3 (CI's own lavapipe) offers
# none. A Debian 13 root with that Mesa is made once by debootstrap in $MESA26_ROOT, and the
# test binaries, built here as usual, run under the root's dynamic loader and libraries with
# its lavapipe as the only Vulkan driver: nothing on this machine changes.
#
# With GPU_LINALG_REQUIRE_COOPERATIVE=1 the cooperative tests fail, rather than skip, where
# the adapter offers no cooperative matrices. Run from the repository root, as root (apt and
# debootstrap); `bash scripts/coop-lavapipe.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT="${MESA26_ROOT:-/var/tmp/gpu-linalg-mesa26}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if [ ! -e "$ROOT/.ready" ]; then
  if ! command -v debootstrap >/dev/null; then
    apt-get install -y -qq debootstrap >/dev/null
  fi
  rm -rf "$ROOT"
  debootstrap --variant=minbase trixie "$ROOT" "$MIRROR" >/dev/null
  echo "deb $MIRROR trixie-backports main" >"$ROOT/etc/apt/sources.list.d/backports.list"
  chroot "$ROOT" apt-get update -qq
  chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq -t trixie-backports mesa-vulkan-drivers libvulkan1 >/dev/null
  touch "$ROOT/.ready"
fi

LIBS="$ROOT/usr/lib/x86_64-linux-gnu:$ROOT/lib/x86_64-linux-gnu"
ICD="$(mktemp --suffix=.json)"
trap 'rm -f "$ICD"' EXIT
sed "s#\"libvulkan_lvp.so\"#\"$ROOT/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so\"#" \
  "$ROOT/usr/share/vulkan/icd.d/lvp_icd.json" >"$ICD"

export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
export GPU_LINALG_REQUIRE_ADAPTER=1 GPU_LINALG_REQUIRE_COOPERATIVE=1
export GPU_LINALG_CACHE_DIR="$(mktemp -d)"
export VK_ICD_FILENAMES="$ICD" WGPU_BACKEND=vulkan

# The test binary of `cargo test --release --test $1`, built here.
test_binary() {
  cargo test --release --test "$1" --no-run --message-format=json 2>/dev/null |
    grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4
}

MATMUL="$(test_binary matmul)"
echo "cooperative-matrix tests on lavapipe of mesa-vulkan-drivers" \
  "$(chroot "$ROOT" dpkg-query -W -f '${Version}' mesa-vulkan-drivers)"
# Every cooperative configuration on the whole case set; the tuned float16 path (cooperative
# where it wins a bucket) on it again; the forced-kernel errors.
"$ROOT/lib64/ld-linux-x86-64.so.2" --library-path "$LIBS" "$MATMUL" \
  cooperative half_precision --nocapture
