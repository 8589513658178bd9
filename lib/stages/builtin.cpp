#include "stages/builtin.h"

#include "run/sweep.h"
#include "stages/sections.h"
#include "stages/stage_kinds.h"

namespace secateur::stages {

const recipe::Registry& registry() {
  static const recipe::Registry instance = [] {
    recipe::Registry r;
    register_sections(r);
    r.add_section({"slurm", "Resources per point when `secateur sweep --slurm` writes a job array.", run::slurm_schema(), false});
    register_inspect(r);
    register_export(r);
    register_prune(r);
    register_eval(r);
    register_train(r);
    register_learn_masks(r);
    return r;
  }();
  return instance;
}

}  // namespace secateur::stages
