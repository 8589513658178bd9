// notebooks/pareto.ipynb executed by Debian's `jupyter nbconvert --execute` on reports that
// secateur runs write here (three fixture decoders of different sizes evaluated on KJV): the
// notebook must run unattended and find the same Pareto front as this test computes.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <set>

#include "util/fs.h"
#include "support/shell.h"

namespace fsys = secateur::fs;

namespace {

using Result = secateur::testing::ShellResult;

Result shell(const std::string& cmd) {
  return secateur::testing::shell(cmd);
}

struct Scratch {
  std::string dir;
  Scratch() {
    std::string tmpl = fsys::join(fsys::temp_directory(), "secateur-notebook-XXXXXX");
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    dir = tmpl;
  }
  ~Scratch() { fsys::remove_all(dir); }
};

}  // namespace

TEST(Notebook, ParetoNotebookExecutesOnRunReports) {
  if (shell("jupyter-nbconvert --version").code != 0)
    GTEST_SKIP() << "jupyter nbconvert is not installed (scripts/install-deps.sh installs jupyter-nbconvert, "
                    "python3-nbformat, python3-ipykernel and python3-matplotlib)";
  Scratch s;
  const std::string fixtures = SECATEUR_FIXTURES;
  const std::string runs = fsys::join(s.dir, "runs");
  for (const std::string model : {"llama_gqa", "qwen2", "mistral"}) {
    const std::string recipe = fsys::join(s.dir, model + ".yaml");
    std::ofstream(recipe) << "name: " << model << "\nmodel: {path: " << fixtures << "/models/" << model
                          << "}\ndata: {name: kjv, tokenizer: " << fixtures << "/data/kjv_unigram128.model, seq_len: 32, cache_dir: "
                          << fsys::join(s.dir, "cache") << "}\nstages:\n  - eval: {split: test, max_tokens: 3000}\n";
    const auto r = shell(std::string(SECATEUR_BINARY) + " run " + recipe + " --out " + fsys::join(runs, model) + " --threads 1");
    ASSERT_EQ(r.code, 0) << r.output;
  }

  // The front by definition: no other point has fewer parameters and a perplexity at least as low.
  struct Point {
    std::string run;
    double params, perplexity;
  };
  std::vector<Point> points;
  for (const std::string model : {"llama_gqa", "qwen2", "mistral"}) {
    const auto report = nlohmann::json::parse(fsys::read_file(fsys::join(runs, model + "/report.json")));
    const auto& results = report["stages"][0]["results"];
    points.push_back({model, results["params"].get<double>(), results["perplexity"].get<double>()});
  }
  std::set<std::string> expected;
  for (const auto& p : points) {
    bool beaten = false;
    for (const auto& q : points)
      if (&q != &p && q.params <= p.params && q.perplexity <= p.perplexity && (q.params < p.params || q.perplexity != p.perplexity))
        beaten = true;
    if (!beaten) expected.insert(p.run);
  }

  const std::string out = fsys::join(s.dir, "out");
  const auto r = shell("SECATEUR_REPORTS=" + runs + " SECATEUR_PARETO_OUT=" + out +
                       " jupyter-nbconvert --to notebook --execute " + SECATEUR_SOURCE_DIR + "/notebooks/pareto.ipynb --output-dir " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(fsys::is_regular_file(fsys::join(out, "pareto.png")));
  const auto pareto = nlohmann::json::parse(fsys::read_file(fsys::join(out, "pareto.json")));
  EXPECT_EQ(pareto["metric"], "perplexity");
  EXPECT_EQ(pareto["x"], "params");
  EXPECT_EQ(pareto["points"], 3);
  std::set<std::string> found;
  for (const auto& p : pareto["front"]) found.insert(p["run"].get<std::string>());
  EXPECT_EQ(found, expected);
  const std::string executed = fsys::read_file(fsys::join(out, "pareto.ipynb"));
  EXPECT_NE(executed.find("Pareto front: " + std::to_string(expected.size()) + " of 3 points"), std::string::npos);
  EXPECT_NE(executed.find("image/png"), std::string::npos);  // the plot is in the executed notebook
}
