// `secateur report RUN_DIR... [--out DIR]`: one comparison table over many runs (a directory of
// runs, such as a sweep, stands for every run in it), sorted by sparsity — how a paper table is
// rebuilt from a sweep. Prints Markdown; with --out also writes comparison.md and comparison.html.
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>

#include "apps/commands.h"
#include "report/report.h"
#include "util/error.h"
#include "util/fs.h"

namespace po = boost::program_options;

namespace secateur::cli {
namespace {

nlohmann::json read_report(const std::string& dir) {
  const std::string path = fs::join(dir, "report.json");
  std::string text = fs::read_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw UserError(path + ": not valid JSON (" + std::string(e.what()) + ")");
  }
}

}  // namespace

int report(const std::vector<std::string>& args) {
  po::options_description options("report");
  options.add_options()("runs", po::value<std::vector<std::string>>(), "run directories")(
      "out", po::value<std::string>(), "also write comparison.md and comparison.html here");
  po::positional_options_description positional;
  positional.add("runs", -1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(options).positional(positional).run(), vm);
  po::notify(vm);
  if (!vm.count("runs")) throw UsageError("report: give one or more run directories");

  std::vector<std::string> dirs;
  for (const auto& a : vm["runs"].as<std::vector<std::string>>()) {
    if (!fs::exists(fs::join(a, "report.json")) && fs::is_directory(a)) {
      size_t before = dirs.size();
      for (const auto& name : fs::list_directory(a))
        if (fs::exists(fs::join(fs::join(a, name), "report.json"))) dirs.push_back(fs::join(a, name));
      if (dirs.size() == before) throw UserError(a + ": no report.json here or in its subdirectories");
    } else {
      dirs.push_back(a);
    }
  }
  std::vector<nlohmann::json> reports;
  std::vector<std::string> names;
  for (const auto& d : dirs) {
    reports.push_back(read_report(d));
    names.push_back(fs::file_name(d));
  }
  const std::string table = report::merged_markdown(reports, names);
  std::printf("%s", table.c_str());
  if (vm.count("out")) {
    const std::string out = vm["out"].as<std::string>();
    fs::create_directories(out);
    fs::write_atomic(fs::join(out, "comparison.md"), table);
    fs::write_atomic(fs::join(out, "comparison.html"), report::merged_html(reports, names));
    std::printf("\nwrote %s and %s\n", fs::join(out, "comparison.md").c_str(), fs::join(out, "comparison.html").c_str());
  }
  return 0;
}

}  // namespace secateur::cli
