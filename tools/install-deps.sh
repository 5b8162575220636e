#!/bin/sh
# Installs the Debian 12 packages vkpeft needs to build and test, only those
# missing. Uses sudo when not root. Safe to run repeatedly.
set -eu

packages="
  gcc make pkg-config meson ninja-build python3
  libvulkan-dev libvulkan1 mesa-vulkan-drivers vulkan-validationlayers
  glslang-dev spirv-tools libcjson-dev libopenblas-dev
  python3-torch
  sentencepiece
  clang libclang-rt-14-dev
"

missing=""
for p in $packages; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

echo "vkpeft: installing$missing" >&2
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
