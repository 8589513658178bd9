// `secateur report RUN_DIR...`: one comparison table over many runs, read from their report.json.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <algorithm>
#include <map>

#include "apps/commands.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/strings.h"

namespace secateur::cli {
namespace {

nlohmann::json read_report(const std::string& dir) {
  const std::string path = dir + "/report.json";
  std::string text = fs::read_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw UserError(path + ": not valid JSON (" + std::string(e.what()) + ")");
  }
}

std::string cell(const nlohmann::json& v) {
  if (v.is_null()) return "—";
  if (v.is_number_float()) return strings::format_number(v.get<double>());
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

}  // namespace

int report(const std::vector<std::string>& args) {
  if (args.empty()) throw UsageError("report: give one or more run directories");
  std::vector<std::string> dirs;
  for (const auto& a : args) {
    if (strings::starts_with(a, "-")) throw UsageError("report: unknown option '" + a + "'");
    // A directory of runs (a sweep) stands for every run inside it.
    if (!fs::exists(a + "/report.json") && fs::is_directory(a)) {
      std::vector<std::string> inner;
      for (const auto& name : fs::list_directory(a))
        if (fs::exists(fs::join(a, name) + "/report.json")) inner.push_back(fs::join(a, name));
      if (inner.empty()) throw UserError(a + ": no report.json here or in its subdirectories");
      dirs.insert(dirs.end(), inner.begin(), inner.end());
    } else {
      dirs.push_back(a);
    }
  }
  // Columns: fixed run facts, then every scalar result any final stage recorded.
  std::vector<nlohmann::json> reports;
  std::vector<std::string> result_keys;
  for (const auto& d : dirs) {
    reports.push_back(read_report(d));
    const auto& stages = reports.back()["stages"];
    if (!stages.is_array() || stages.empty()) continue;
    const auto& results = stages.back()["results"];
    if (!results.is_object()) continue;
    for (const auto& [k, v] : results.items())
      if (v.is_primitive() && std::find(result_keys.begin(), result_keys.end(), k) == result_keys.end())
        result_keys.push_back(k);
  }
  std::string header = "| run | status | seed | stages | wall |";
  std::string rule = "|---|---|---|---|---|";
  for (const auto& k : result_keys) {
    header += " " + k + " |";
    rule += "---|";
  }
  std::printf("%s\n%s\n", header.c_str(), rule.c_str());
  for (size_t i = 0; i < reports.size(); ++i) {
    const auto& r = reports[i];
    std::vector<std::string> kinds;
    if (r["stages"].is_array())
      for (const auto& s : r["stages"]) kinds.push_back(s.value("kind", "?"));
    std::string wall = r.contains("wall_s") && r["wall_s"].is_number() ? strings::human_duration(r["wall_s"].get<double>()) : "—";
    std::string row = "| " + fs::file_name(dirs[i]) + " | " + cell(r.value("status", nlohmann::json())) +
                      " | " + cell(r.value("seed", nlohmann::json())) + " | " + strings::join(kinds, " → ") + " | " + wall + " |";
    const nlohmann::json* results = nullptr;
    if (r["stages"].is_array() && !r["stages"].empty() && r["stages"].back()["results"].is_object())
      results = &r["stages"].back()["results"];
    for (const auto& k : result_keys) row += " " + (results && results->contains(k) ? cell((*results)[k]) : "—") + " |";
    std::printf("%s\n", row.c_str());
  }
  return 0;
}

}  // namespace secateur::cli
