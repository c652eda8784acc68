#!/usr/bin/env bash
# Benchmark gpu-linalg on a machine with a real GPU and compare with PyTorch where it is installed.
#
#   scripts/bench-gpu.sh [OUT_DIR] [SIZES]
#
# Writes OUT_DIR/bench.json, bench.csv, bench.svg (gpu-linalg bench --backend gpu), the GEMM
# bars' gemm.* (fp32 and fp16 at 1024–8192) and half.txt, the SVD family's decomp.* and
# batched.*, the command stream's chained.*, and, when `python3 -c 'import torch'` works,
# OUT_DIR/torch.txt with PyTorch's fp32 matmul (TF32 off) and fp16 matmul at the GEMM sizes, cuDNN's conv2d on
# the same layers and torch.linalg.svd / eigh (cuSOLVER) on the same matrices. Paste the tables into
# BENCHMARKS.md with this command line.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench-out}"
sizes="${2:-1024,2048,4096}"
mkdir -p "$out"

cargo build --release
bin=target/release/gpu-linalg
"$bin" --backend gpu info | tee "$out/info.txt"
# Every matmul candidate (the blocked family for discrete GPUs among them), checked, then timed.
"$bin" --backend gpu info --tune | tee "$out/tune.txt"
"$bin" --backend gpu bench --sizes "$sizes" --repeat 10 \
  --json "$out/bench.json" --csv "$out/bench.csv" --plot "$out/bench.svg" | tee "$out/bench.txt"
# The decompositions beside the same adapter's matmul (restated in matmul-times, with their
# dispatch and submit counts, after the table): square 256 and 1024, tall 4096x256.
"$bin" --backend gpu bench --ops matmul,svd,svdvals,eigh,eigvalsh,qr \
  --sizes 256,1024,4096x256x256,4096x256 --repeat 5 \
  --json "$out/decomp.json" --plot "$out/decomp.svg" | tee "$out/decomp.txt"
"$bin" --backend gpu bench --ops svd-batched --sizes 10000x16x16,1000x32x32 --repeat 5 \
  --json "$out/batched.json" | tee "$out/batched.txt"
# The GEMM bars: fp32 and fp16 at 1024, 2048, 4096 and 8192, each row naming the kernel its
# shape bucket chose (float16: a cooperative configuration, or `widen` and the f32 kernel), then
# bfloat16, float16 with the matrix units off, and every cooperative configuration forced at
# 4096 (`info --tune` above lists the float16 paths' figures at 1024³).
gemm_sizes=1024,2048,4096,8192
"$bin" --backend gpu bench --ops matmul,matmul-f16 --sizes "$gemm_sizes" --repeat 10 \
  --json "$out/gemm.json" | tee "$out/gemm.txt"
"$bin" --backend gpu bench --ops matmul-bf16 --sizes 1024,4096 --repeat 10 \
  --json "$out/half.json" | tee "$out/half.txt"
GPU_LINALG_COOPERATIVE_MATRIX=off "$bin" --backend gpu bench --ops matmul-f16 --sizes 4096 \
  --repeat 10 | tee -a "$out/half.txt"
for cfg in coop:1x1@16 coop:2x2@16 coop:4x2@16 coop:4x4@16 coop:2x2@8 coop:4x4@8; do
  GPU_LINALG_MATMUL_F16_KERNEL="$cfg" "$bin" --backend gpu bench --ops matmul-f16 --sizes 4096 \
    --repeat 10 2>&1 | tee -a "$out/half.txt" || true
done
# Split-k: a product with few output blocks and a long k, split by default and not.
"$bin" --backend gpu bench --ops matmul --sizes 256x16384x256 --repeat 10 | tee "$out/splitk.txt"
GPU_LINALG_MATMUL_SPLIT_K=off "$bin" --backend gpu bench --ops matmul --sizes 256x16384x256 \
  --repeat 10 | tee -a "$out/splitk.txt"
# The command stream against per-op submission: 1,000 dependent 64×64 matmuls and 4,096-float
# adds (ops/s, dispatches and submits per run).
"$bin" --backend gpu bench --ops chained --repeat 10 --json "$out/chained.json" | tee "$out/chained.txt"
# The streamed PCA of a 1 GiB matrix read from a .npy file in row blocks, in GB/s, beside the
# in-memory PCA of the same matrix.
"$bin" --backend gpu bench --ops pca-stream --sizes 4194304x64 --repeat 3 \
  --json "$out/pca-stream.json" | tee "$out/pca-stream.txt"

if python3 -c 'import torch' 2>/dev/null; then
  SIZES="$sizes" GEMM_SIZES="$gemm_sizes" python3 - <<'PY' | tee "$out/torch.txt"
import os, time, torch
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
dev = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
name = torch.cuda.get_device_name(0) if dev == "cuda" else dev
print(f"PyTorch {torch.__version__} on {name}, float32, TF32 off")
for n in map(int, os.environ["GEMM_SIZES"].split(",")):
    a = torch.rand(n, n, device=dev); b = torch.rand(n, n, device=dev)
    for _ in range(3): a @ b
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    sync(); ts = []
    for _ in range(10):
        t = time.perf_counter(); a @ b; sync(); ts.append(time.perf_counter() - t)
    ts.sort(); m = ts[len(ts) // 2]
    print(f"matmul {n}x{n}x{n}: median {m*1e3:.3f} ms = {2*n**3/m/1e9:.1f} GFLOP/s")
for n in map(int, os.environ["GEMM_SIZES"].split(",")):
    a = torch.rand(n, n, device=dev, dtype=torch.float16); b = torch.rand(n, n, device=dev, dtype=torch.float16)
    for _ in range(3): a @ b
    sync(); ts = []
    for _ in range(10):
        t = time.perf_counter(); a @ b; sync(); ts.append(time.perf_counter() - t)
    ts.sort(); m = ts[len(ts) // 2]
    print(f"matmul fp16 {n}x{n}x{n}: median {m*1e3:.3f} ms = {2*n**3/m/1e9:.1f} GFLOP/s")
# The conv2d layers of `gpu-linalg bench` (cuDNN, fp32, TF32 off).
layers = [((1, 64, 56, 56), (64, 64, 3, 3), 1, 1), ((1, 256, 14, 14), (256, 256, 3, 3), 1, 1),
          ((1, 256, 56, 56), (256, 1, 3, 3), 1, 256), ((1, 256, 28, 28), (128, 256, 1, 1), 0, 1)]
F = torch.nn.functional
for xs, ws, pad, groups in layers:
    x = torch.rand(*xs, device=dev); w = torch.rand(*ws, device=dev)
    for _ in range(3): F.conv2d(x, w, padding=pad, groups=groups)
    sync(); ts = []
    for _ in range(10):
        t = time.perf_counter(); y = F.conv2d(x, w, padding=pad, groups=groups); sync(); ts.append(time.perf_counter() - t)
    ts.sort(); m = ts[len(ts) // 2]
    flops = 2 * y.numel() * (ws[1] * ws[2] * ws[3])
    shape = "x".join(map(str, xs)) + "*" + "x".join(map(str, ws))
    print(f"conv2d {shape}: median {m*1e3:.3f} ms = {flops/m/1e9:.1f} GFLOP/s")
# torch.linalg.svd (thin) and eigh on the shapes of `bench --ops svd,eigh,svd-batched`.
def timed(f, reps=5):
    f(); sync(); ts = []
    for _ in range(reps):
        t = time.perf_counter(); f(); sync(); ts.append(time.perf_counter() - t)
    ts.sort(); return ts[len(ts) // 2]
for shape in [(64, 64), (128, 128), (256, 256), (512, 512), (1024, 1024), (4096, 256)]:
    a = torch.rand(*shape, device=dev) * 2 - 1
    m = timed(lambda: torch.linalg.svd(a, full_matrices=False))
    print(f"svd {shape[0]}x{shape[1]}: median {m*1e3:.3f} ms")
for n in [64, 128, 256, 512, 1024]:
    b = torch.rand(n, n, device=dev) * 2 - 1; s = (b + b.T) / 2
    m = timed(lambda: torch.linalg.eigh(s))
    print(f"eigh {n}x{n}: median {m*1e3:.3f} ms")
for batch, k in [(10000, 16), (1000, 32)]:
    a = torch.rand(batch, k, k, device=dev) * 2 - 1
    m = timed(lambda: torch.linalg.svd(a, full_matrices=False))
    print(f"svd-batched {batch}x{k}x{k}: median {m*1e3:.3f} ms")
PY
else
  echo "PyTorch not installed: no side-by-side (pip install torch to add one)" | tee "$out/torch.txt"
fi
echo "results in $out/"
