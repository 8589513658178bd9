#include "stages/builtin.h"

#include "stages/sections.h"

namespace secateur::stages {

const recipe::Registry& registry() {
  static const recipe::Registry instance = [] {
    recipe::Registry r;
    register_sections(r);
    return r;
  }();
  return instance;
}

}  // namespace secateur::stages
