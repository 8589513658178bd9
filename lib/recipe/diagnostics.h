#pragma once
// Recipe problems are collected, not thrown one at a time: a user sees every error at once.
#include <string>
#include <vector>

#include "recipe/value.h"
#include "util/error.h"

namespace secateur::recipe {

struct Diagnostic {
  SourceLoc loc;
  std::string message;
  std::string str() const;  // "file:line:col: message"
};

class Diagnostics {
 public:
  void error(const SourceLoc& loc, std::string message) { items_.push_back({loc, std::move(message)}); }
  bool empty() const { return items_.empty(); }
  size_t size() const { return items_.size(); }
  const std::vector<Diagnostic>& items() const { return items_; }
  void append(const Diagnostics& other) { items_.insert(items_.end(), other.items_.begin(), other.items_.end()); }
  // Throws RecipeErrors when there is at least one error.
  void throw_if_any() const;

 private:
  std::vector<Diagnostic> items_;
};

// All the errors of one recipe; what() is every error on its own line, then "N errors; nothing was run."
class RecipeErrors : public UserError {
 public:
  explicit RecipeErrors(std::vector<Diagnostic> errors);
  const std::vector<Diagnostic>& errors() const { return errors_; }

 private:
  std::vector<Diagnostic> errors_;
};

}  // namespace secateur::recipe
