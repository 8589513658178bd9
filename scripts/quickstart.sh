#!/usr/bin/env bash
# Installs dependencies, builds (Release) into build/, runs recipes/quickstart.yaml and prints
# where its report is. Extra arguments go to `secateur run` (e.g. --device cuda, --set seed=1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build --target secateur_cli
out="runs/quickstart-$(date -u +%Y%m%dT%H%M%SZ)"
./build/bin/secateur run recipes/quickstart.yaml --out "$out" "$@"
echo
echo "report: $out/report.md  (also report.html, report.json; compare runs with: ./build/bin/secateur report runs/)"
