#pragma once
// Running commands from tests (the `secateur` binary, python, nbconvert): the exit code and
// stdout + stderr together, as a user sees them in a terminal.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace secateur::testing {

struct ShellResult {
  int code;            // the exit status; -1 when the command was killed by a signal
  std::string output;  // stdout and stderr together
};

inline ShellResult shell(const std::string& command) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed: " + command};
  std::string out;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// The CLI with `args`; `prefix` goes before the binary (environment assignments "A=b ", or a
// wrapper such as setpriv).
inline ShellResult run_secateur(const std::string& args, const std::string& prefix = "") {
  return shell(prefix + SECATEUR_BINARY + " " + args);
}

}  // namespace secateur::testing
