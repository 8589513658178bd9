#!/usr/bin/env bash
# Installs every build, test and data dependency of secateur from Debian 12 packages.
# Idempotent and non-interactive: packages already installed are skipped by apt, and
# `apt-get update` runs at most once per call (and not at all when nothing is missing).
# Usage: scripts/install-deps.sh [--with-slurm] [--with-fuzz]
set -euo pipefail

PKGS=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config git
  # LibTorch 1.13 (CPU) and the libraries secateur links
  libtorch-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
  # Debian's LibTorch calls BLAS through libblas.so.3, which is netlib's reference sgemm unless an
  # optimised one is installed (perf: 70% of a CPU eval was reference sgemm_). OpenBLAS's serial
  # build: ~10x faster kernels, and no BLAS thread pool, whose workers spin in sched_yield and
  # slowed a training run ~50x while compilers or parallel tests shared the two cores
  libopenblas0-serial
  # the Gloo (CPU) backend of data parallelism: headers of the gloo that LibTorch links
  libgloo-dev
  libsentencepiece-dev sentencepiece
  libboost-program-options-dev nlohmann-json3-dev
  # tokenizers: Unicode data and normalisation (utf8proc), \p{L}/lookahead regexes (PCRE2)
  libutf8proc-dev libpcre2-dev
  # tests
  libgtest-dev libgmock-dev
  # built-in corpora: King James Bible text and its `bible` reader
  bible-kjv-text bible-kjv
  # notebooks/pareto.ipynb, executed by a ctest (label notebook) with `jupyter nbconvert --execute`
  jupyter-nbconvert python3-nbformat python3-ipykernel python3-matplotlib
)
for arg in "$@"; do
  case $arg in
    --with-slurm) PKGS+=(slurm-wlm munge) ;;
    --with-fuzz) PKGS+=(clang libclang-rt-14-dev) ;;
    *) echo "install-deps.sh: unknown option '$arg' (expected --with-slurm or --with-fuzz)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps.sh: all ${#PKGS[@]} packages already installed"
  exit 0
fi

SUDO=
[[ $EUID -ne 0 ]] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
echo "install-deps.sh: installing ${#missing[@]} packages: ${missing[*]}"
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
