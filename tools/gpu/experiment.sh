# The device experiment (a lent GPU machine with the NVIDIA driver, PyTorch, transformers and peft, but no
# Vulkan loader and no network): unpacks the loader (.gl/*.deb, downloaded here by apt-get download) and the
# build tools/gpu/pack.sh made (.gpu/build.tar.xz), then runs the steps named in $STEPS (default: all of
# them) in order. Run from the repository root: STEPS="sweep bench s2s" bash tools/gpu/experiment.sh
#   core      the Vulkan tests $CORE names (a regular expression; default the matmul, decoder and seq2seq ones)
#   sweep     matmul tile configurations (tools/gpu/matmul_sweep.sh; $SWEEP_CONFIGS, else its own list)
#   bench     vkpeft bench train (LLaMA shapes, profiled; $BENCHES: "model delta B T steps [flag]|...") and inspect
#   torch     PyTorch + PEFT training on the same models (tools/gpu/torch_bench.py)
#   generate  vkpeft bench generate
#   tgen      transformers generate on the same models (tools/gpu/torch_generate.py)
#   s2s       BART/mBART LoRA trained by vkpeft, its PEFT files loaded by transformers + peft
#   suite     the packed Vulkan tests (tools/gpu/runsuite.py), $SUITE_S seconds at most
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
STEPS=${STEPS:-"core sweep bench torch generate tgen s2s suite"}
for f in .gl/libvulkan1*.deb .gl/libegl1*.deb .gl/libglvnd0*.deb .gl/libopengl0*.deb .gl/libgl1*.deb .gl/libglx0*.deb .gl/libgles2*.deb; do dpkg -x $f /; done; ldconfig
mkdir -p /tmp/deps; for f in .gl/vulkan-validationlayers*.deb .gl/libcjson1*.deb .gl/libopenblas0*.deb .gl/libgfortran5*.deb; do dpkg -x $f /tmp/deps; done
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu:/tmp/deps/usr/lib/x86_64-linux-gnu/openblas-pthread
export VK_ADD_LAYER_PATH=/tmp/deps/usr/share/vulkan/explicit_layer.d
I=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; [ -f $I ] && export VK_DRIVER_FILES=$I
mkdir -p /tmp/gb && tar -xJf .gpu/build.tar.xz -C /tmp/gb
V=/tmp/gb/build/tools/vkpeft; export XDG_CACHE_HOME=/tmp/vkcache
T0=$(date +%s); step() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }
has() { case " $STEPS " in *" $1 "*) return 0;; esac; return 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if has core; then step core; SUITE_ONLY=${CORE:-"kernels_matmul|decoder|seq2seq|generate"} timeout ${CORE_S:-150} \
  python3 tools/gpu/runsuite.py > $OUT/core.txt 2>&1; mv $OUT/suite.log $OUT/core.log; tail -20 $OUT/core.txt; fi
if has bench || has torch || has generate || has tgen; then
  step models; python3 tools/gpu/mkmodels.py /tmp/m 2>&1 | grep -v -i "warn\|shards"; fi
if has sweep; then step sweep; timeout ${SWEEP_S:-120} bash tools/gpu/matmul_sweep.sh $V ${SWEEP_CONFIGS:-} 2>&1 | tail -40
  # the single config with the least summed time, for one more 1.1B bench beside the per-shape choice
  BEST=$(python3 -c "import json,glob,os; t={os.path.basename(p)[:-5]: sum(r['ms'] for r in json.load(open(p))['rows']) for p in glob.glob('$OUT/matmul_sweep/*.json')}; t.pop('auto',None); print(min(t,key=t.get) if t else '')"); echo "best single config: $BEST"; fi
if has bench; then
  B=${BENCHES:-"small lora 4 64 30 --profile|small mam:l=16,r=64,s=2 4 64 30 --profile|1b lora 4 512 6 --profile|1b lora 4 512 6 --checkpoint-activations|1b mam 4 512 4"}
  [ -n "${BEST:-}" ] && B="$B|1b lora 4 512 6 --best"
  IFS='|'; for spec in $B; do IFS=' '; set -- $spec; step bench $spec
    if [ "${6:-}" = --best ]; then echo "VKPEFT_MATMUL_TILES=$BEST"; VKPEFT_MATMUL_TILES=$BEST timeout 90 $V bench train --model /tmp/m/$1 --delta $2 --batch $3 --len $4 --steps $5 --weights f16
    else timeout 90 $V bench train --model /tmp/m/$1 --delta $2 --batch $3 --len $4 --steps $5 --weights f16 $6 $7; fi 2>&1 | head -${BENCH_LINES:-60}; done; IFS=' '
  step inspect; for d in lora mam; do timeout 30 $V inspect --model /tmp/m/1b --delta $d --batch 4 --max-len 512 2>&1; done; fi
if has torch; then step torch-train; for spec in "small 4 64 20" "1b 4 512 8"; do set -- $spec
  timeout 150 python3 tools/gpu/torch_bench.py /tmp/m/$1 $2 $3 $4 2>&1 | grep -v -i "warn\|loading"; done; fi
if has generate; then
  step generate; for m in small 1b; do timeout 60 $V bench generate --model /tmp/m/$m --batch 4 --prompt-len 32 --new-tokens 32 2>&1 | tail -3; done; fi
if has tgen; then step torch-generate; timeout 90 python3 tools/gpu/torch_generate.py /tmp/m/small /tmp/m/1b 2>&1 | grep -v -i "warn\|loading"; fi
if has s2s; then
  step s2s; python3 tools/gpu/mks2s.py /tmp/s 2>&1 | grep -v -i "warn"
  for m in bart mbart; do step s2s $m
    timeout 60 $V train --model /tmp/s/$m --delta lora:r=8,a=16 --lora-targets q_proj,k_proj,v_proj,out_proj,fc1,fc2 \
      --data /tmp/s/train.jsonl --out /tmp/s/run-$m --batch 32 --epochs 4 --lr 5e-3 --weights f32 --quiet --json | tail -c 400
    timeout 60 $V eval --model /tmp/s/$m --delta /tmp/s/run-$m --data /tmp/s/dev.jsonl --weights f32 --max-new-tokens 8 --json
    timeout 120 python3 tests/python/peft_hf_check.py --model /tmp/s/$m --peft /tmp/s/run-$m --data /tmp/s/dev.jsonl \
      --dtype float64 --base 2>&1 | grep -v -i "warn"; done; fi
if has suite; then step suite; timeout ${SUITE_S:-170} python3 tools/gpu/runsuite.py > $OUT/suite.txt 2>&1; grep -v "^ok" $OUT/suite.txt | tail -40; fi
step done
