#pragma once
#include "recipe/registry.h"

namespace secateur::stages {

// Top-level recipe sections that are not stages: `model:` (what to load). Later sections
// (`data:`, `slurm:`, `distributed:`) register here too.
void register_sections(recipe::Registry& registry);

}  // namespace secateur::stages
