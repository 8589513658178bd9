#!/usr/bin/env bash
# Installs dependencies, builds (Release) into build/, and runs recipes/quickstart.yaml.
# Extra arguments go to `secateur run` (e.g. --device cuda, --set seed=1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build --target secateur_cli
./build/bin/secateur run recipes/quickstart.yaml "$@"
