#pragma once
// One registration function per stage kind; builtin.cpp calls them all.
#include "recipe/registry.h"

namespace secateur::stages {

void register_inspect(recipe::Registry& registry);
void register_export(recipe::Registry& registry);
void register_prune(recipe::Registry& registry);
void register_eval(recipe::Registry& registry);
void register_train(recipe::Registry& registry);
void register_learn_masks(recipe::Registry& registry);

}  // namespace secateur::stages
