#pragma once
// One function per `secateur` command; each returns the process exit code and throws
// UsageError / UserError for the caller to report.
#include <string>
#include <vector>

namespace secateur::cli {

int version();
int help(const std::vector<std::string>& args);
int run(const std::vector<std::string>& args, const std::string& command_line);
int validate(const std::vector<std::string>& args);
int inspect(const std::vector<std::string>& args);
int sweep(const std::vector<std::string>& args);
int report(const std::vector<std::string>& args);

}  // namespace secateur::cli
