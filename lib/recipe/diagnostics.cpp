#include "recipe/diagnostics.h"

#include <algorithm>

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

// Errors read top to bottom: grouped by file (in the order files first appear), then by line and
// column within a file, whatever order the checks found them in.
std::vector<Diagnostic> in_reading_order(std::vector<Diagnostic> errors) {
  std::vector<std::string> files;
  for (const auto& d : errors)
    if (std::find(files.begin(), files.end(), d.loc.file) == files.end()) files.push_back(d.loc.file);
  auto file_rank = [&](const Diagnostic& d) { return std::find(files.begin(), files.end(), d.loc.file) - files.begin(); };
  std::stable_sort(errors.begin(), errors.end(), [&](const Diagnostic& a, const Diagnostic& b) {
    auto ra = file_rank(a), rb = file_rank(b);
    if (ra != rb) return ra < rb;
    if (a.loc.line != b.loc.line) return a.loc.line < b.loc.line;
    return a.loc.column < b.loc.column;
  });
  return errors;
}

RecipeErrors::RecipeErrors(std::vector<Diagnostic> errors)
    : UserError(describe_all(in_reading_order(errors))), errors_(in_reading_order(std::move(errors))) {}

void Diagnostics::throw_if_any() const {
  if (!items_.empty()) throw RecipeErrors(items_);
}

}  // namespace secateur::recipe
