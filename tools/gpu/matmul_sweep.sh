#!/bin/sh
# Times the tiled matmul with each of a few tile configs on this machine's GPU
# and prints one table: a row per benchmark product (`vkpeft bench kernels
# --only matmul`: the small-model shapes, a 1024³ square, a 1.1B LLaMA step and
# a decode step), GFLOP/s per config, the tiles the per-shape choice (auto)
# took, and the fastest config. The per-shape rule and its candidates live in
# runtime/kernels/matmul.c (tiled_auto); this is what tunes them.
#
#   tools/gpu/matmul_sweep.sh /tmp/gb/build/tools/vkpeft            # the default configs
#   tools/gpu/matmul_sweep.sh ./build/tools/vkpeft 128x128x8x8x8 64x64x16x4x4
#
# A config is BMxBNxBKxTMxTN (VKPEFT_MATMUL_TILES): a BM x BN tile of C per
# workgroup, BK deep, TM x TN per invocation (4 or 8). The JSON of every run
# goes to $OUT/matmul_sweep (default /tmp/matmul_sweep); a config gets
# SWEEP_ONE_S seconds (default 60: on the H200 128x128x16 ran past 100). BENCH_ARGS adds bench
# options (BENCH_ARGS='--quick --repeat 1' to try the script on a CPU device).
set -eu
bin=${1:?usage: matmul_sweep.sh path/to/vkpeft [BMxBNxBKxTMxTN ...]}
shift
if [ $# -eq 0 ]; then
    # The candidates of runtime/kernels/matmul.c, deeper and in-between
    # shapes of the big tile, and skinny ones for the LoRA and decode rows
    # (C 2048x8, 8x2048, 4x2048), which no candidate fits yet.
    set -- auto 128x128x8x8x8 128x128x16x8x8 256x128x8x8x8 128x64x8x8x4 64x128x8x4x8 \
        128x64x16x8x8 64x64x16x4x4 64x64x8x8x4 64x64x16x8x8 32x32x16x4x4 \
        64x16x16x4x4 16x64x16x4x4
fi
out=${OUT:-/tmp}/matmul_sweep
mkdir -p "$out"
for c in "$@"; do
    t0=$(date +%s)
    if VKPEFT_MATMUL_TILES=$c timeout ${SWEEP_ONE_S:-60} "$bin" bench kernels --only matmul --matmul-variant tiled \
        --no-blas --repeat 5 ${BENCH_ARGS:-} --json >"$out/$c.json" 2>"$out/$c.err"; then
        echo "$c: $(($(date +%s) - t0)) s" >&2
    else
        echo "$c: failed: $(tail -n 1 "$out/$c.err")" >&2
        rm -f "$out/$c.json"
    fi
done
python3 - "$out" "$@" <<'EOF'
import json, os, sys
out, configs = sys.argv[1], sys.argv[2:]
runs = {}
for c in configs:
    p = os.path.join(out, c + '.json')
    if os.path.exists(p):
        runs[c] = {(r['op'], r['shape']): r for r in json.load(open(p))['rows']}
if not runs:
    sys.exit('no config ran')
names = [c for c in configs if c in runs]
keys = list(next(iter(runs.values())).keys())
short = {'matmul_forward': 'fwd', 'matmul_backward_dx': 'dx', 'matmul_backward_dw_db': 'dw'}
print('GFLOP/s per config; auto = the per-shape choice (its tiles in the auto column)')
head = f"{'op':4} {'shape':30} {'auto tiles':18}" + ''.join(f' {c:>14}' for c in names) + '  best'
print(head)
total = {c: 0.0 for c in names}
for k in keys:
    line = f"{short.get(k[0], k[0]):4} {k[1]:30} "
    auto = runs.get('auto', {}).get(k)
    line += f"{auto['variant'].replace('tiled ', '') if auto else '-':18}"
    best, best_gf = '-', 0.0
    for c in names:
        r = runs[c].get(k)
        if r is None:
            line += f" {'-':>14}"
            continue
        line += f" {r['gflops']:14.1f}"
        total[c] += r['ms']
        if c != 'auto' and r['gflops'] > best_gf:
            best, best_gf = c, r['gflops']
    print(line + '  ' + best)
print(f"{'sum of ms':53}" + ''.join(f' {total[c]:14.2f}' for c in names))
EOF
