#!/usr/bin/env bash
# Installs dependencies, builds (Release) into build/, and runs the whole test suite with ctest.
# Usage: scripts/test.sh [extra ctest args, e.g. -L recipe]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build
ctest --test-dir build --output-on-failure -j "$(nproc)" "$@"
