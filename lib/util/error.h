#pragma once
// Error types whose message is shown to the user as one line. The CLI maps them to exit codes:
// UserError → 1 (bad recipe, bad file, bad value), UsageError → 2 (bad command line);
// anything else is an internal failure (exit 3).
#include <stdexcept>
#include <string>

namespace secateur {

class UserError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace secateur
