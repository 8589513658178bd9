#pragma once
// The model a recipe names, loaded once on first use by any stage that needs it.
#include "model/model.h"
#include "run/run_state.h"

namespace secateur::stages {

// Loads the recipe's `model:` section into state.model (device and dtype from the recipe) unless
// a model is already there; throws UserError when the recipe has no `model:` section.
model::Model& ensure_model(run::RunState& state);

// Facts about a model for reports: family, dtype, parameters, per-layer shapes.
nlohmann::json model_summary(const model::Model& m);

}  // namespace secateur::stages
