#pragma once
#include "recipe/registry.h"

namespace secateur::stages {

// The registry holding every built-in stage kind and recipe section. Each stage lives in its own
// file under lib/stages/ and is added here; nothing else needs to change to add one.
const recipe::Registry& registry();

}  // namespace secateur::stages
