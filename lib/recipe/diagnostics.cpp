#include "recipe/diagnostics.h"

namespace secateur::recipe {

std::string Diagnostic::str() const {
  std::string where = loc.str();
  return where.empty() ? message : where + ": " + message;
}

namespace {
std::string describe_all(const std::vector<Diagnostic>& errors) {
  std::string text;
  for (const auto& d : errors) text += d.str() + "\n";
  text += std::to_string(errors.size()) + (errors.size() == 1 ? " error" : " errors") + "; nothing was run.";
  return text;
}
}  // namespace

RecipeErrors::RecipeErrors(std::vector<Diagnostic> errors)
    : UserError(describe_all(errors)), errors_(std::move(errors)) {}

void Diagnostics::throw_if_any() const {
  if (!items_.empty()) throw RecipeErrors(items_);
}

}  // namespace secateur::recipe
