# The device experiment (a lent GPU machine with the NVIDIA driver, PyTorch, transformers and peft, but no
# Vulkan loader and no network): unpacks the loader (.gl/*.deb, downloaded here by apt-get download) and the
# build tools/gpu/pack.sh made (.gpu/build.tar.xz), then vkpeft bench, inspect, PyTorch + PEFT on the same
# card, and the Vulkan tests. Run from the repository root: bash tools/gpu/experiment.sh
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
for f in .gl/libvulkan1*.deb .gl/libegl1*.deb .gl/libglvnd0*.deb .gl/libopengl0*.deb .gl/libgl1*.deb .gl/libglx0*.deb .gl/libgles2*.deb; do dpkg -x $f /; done; ldconfig
mkdir -p /tmp/deps; for f in .gl/vulkan-validationlayers*.deb .gl/libcjson1*.deb .gl/libopenblas0*.deb .gl/libgfortran5*.deb; do dpkg -x $f /tmp/deps; done
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu:/tmp/deps/usr/lib/x86_64-linux-gnu/openblas-pthread
export VK_ADD_LAYER_PATH=/tmp/deps/usr/share/vulkan/explicit_layer.d
I=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; [ -f $I ] && export VK_DRIVER_FILES=$I
mkdir -p /tmp/gb && tar -xJf .gpu/build.tar.xz -C /tmp/gb
V=/tmp/gb/build/tools/vkpeft; export XDG_CACHE_HOME=/tmp/vkcache
T0=$(date +%s); step() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }
step models; python3 tools/gpu/mkmodels.py /tmp/m 2>&1 | grep -v -i "warn\|shards"
B="small lora 4 64 30|small mam:l=16,r=64,s=2 4 64 30|1b lora 4 512 6|1b lora 4 512 6 --checkpoint-activations|1b mam 4 512 4"
IFS='|'; for spec in $B; do IFS=' '; set -- $spec; step bench $spec
  timeout 90 $V bench train --model /tmp/m/$1 --delta $2 --batch $3 --len $4 --steps $5 --weights f16 $6; done; IFS=' '
step torch-train; for spec in "small 4 64 20" "1b 4 512 8"; do set -- $spec
  timeout 150 python3 tools/gpu/torch_bench.py /tmp/m/$1 $2 $3 $4 2>&1 | grep -v -i "warn\|loading"; done
step inspect; for d in lora mam; do timeout 30 $V inspect --model /tmp/m/1b --delta $d --batch 4 --max-len 512 2>&1 | tail -14; done
step generate; for m in small 1b; do timeout 60 $V bench generate --model /tmp/m/$m --batch 4 --prompt-len 32 --new-tokens 32 2>&1 | tail -3; done
step torch-generate; timeout 90 python3 tools/gpu/torch_generate.py /tmp/m/small /tmp/m/1b 2>&1 | grep -v -i "warn\|loading"
step suite; timeout ${SUITE_S:-170} python3 tools/gpu/runsuite.py > $OUT/suite.txt 2>&1; grep -v "^ok" $OUT/suite.txt | tail -40
step done
