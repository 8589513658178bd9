// Crash safety of a training run: a `secateur run` child killed with SIGKILL (no handler runs, no
// checkpoint is written on the way out) at fixed points — before its first checkpoint and just
// after its 2nd, 4th and 6th of 8 steps — leaves a readable report.json, and `secateur run
// --resume` then ends exactly where an uninterrupted run ends: the same training loss and
// bitwise the same exported weights.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "io/weights.h"
#include "util/fs.h"
#include "support/shell.h"

extern char** environ;

namespace fsys = secateur::fs;
using json = nlohmann::json;

namespace {

using Result = secateur::testing::ShellResult;

Result run(const std::string& args) {
  const std::string cmd = std::string(SECATEUR_BINARY) + " " + args;
  return secateur::testing::shell(cmd);
}

struct Scratch {
  std::string dir;
  Scratch() {
    std::string tmpl = fsys::join(fsys::temp_directory(), "secateur-kill-resume-XXXXXX");
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    dir = tmpl;
  }
  ~Scratch() { fsys::remove_all(dir); }
  std::string path(const std::string& name) const { return fsys::join(dir, name); }
};

const std::string kFixtures = SECATEUR_FIXTURES;
constexpr int kSteps = 8;

// A corpus of seeded sentences (no system corpus needed) and a recipe that trains the LLaMA
// fixture on it for kSteps steps with a checkpoint every 2, then exports.
std::string write_recipe(const Scratch& s) {
  static const char* const kWords[] = {"In", "the", "beginning", "God", "created", "heaven", "and", "earth.",
                                       "Jesus", "wept;", "LORD", "said,", "Let", "there", "be", "light:"};
  std::ofstream corpus(s.path("corpus.txt"));
  uint64_t state = 7;
  for (int line = 0; line < 400; ++line) {
    for (int w = 0; w < 12; ++w) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;  // Knuth's MMIX LCG
      corpus << (w ? " " : "") << kWords[(state >> 33) % 16];
    }
    corpus << "\n";
  }
  const std::string recipe = s.path("train.yaml");
  std::ofstream(recipe) << "name: kill_resume\nseed: 5\ndevice: cpu\nthreads: 1\n"
                           "model: {path: " + kFixtures + "/models/llama_gqa}\n"
                           "data: {files: [" + s.path("corpus.txt") + "], tokenizer: " + kFixtures +
                               "/data/kjv_unigram128.model, seq_len: 16, batch_size: 2, cache_dir: " + s.path("cache") + "}\n"
                           "stages:\n"
                           "  - train:\n"
                           "      steps: " + std::to_string(kSteps) + "\n"
                           "      max_examples: 64\n"
                           "      log_every: 1\n"
                           "      optimizer: {lr: 3.0e-3, weight_decay: 0.01}\n"
                           "      schedule: {name: cosine, warmup_steps: 2}\n"
                           "      eval: {enabled: false}\n"
                           "      checkpoint: {every: 2, keep_last: 10, best_metric: ''}\n"
                           "  - export: {}\n";
  return recipe;
}

std::string checkpoint_dir(const std::string& run_dir, int step) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%08d", step);
  return run_dir + "/checkpoints/1-train/" + name;
}

// Starts `secateur run RECIPE --out OUT`, waits until `ready` holds (polling every 2 ms), kills
// the child with SIGKILL and reaps it. Returns false when the child exited before `ready`.
template <class Ready>
bool kill_when(const std::string& recipe, const std::string& out, Ready ready) {
  const std::string binary = SECATEUR_BINARY;
  std::vector<std::string> args = {binary, "run", recipe, "--out", out};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) throw std::runtime_error("cannot start " + binary);
  int status = 0;
  for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(120); std::chrono::steady_clock::now() < until;) {
    if (ready()) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    }
    if (::waitpid(pid, &status, WNOHANG) == pid) return false;  // finished first
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return false;
}

json report(const std::string& run_dir) { return json::parse(fsys::read_file(run_dir + "/report.json")); }

}  // namespace

TEST(KillResume, SigkillAtFixedPointsThenResumeEqualsAnUninterruptedRun) {
  // The train stage (lib/train, lib/stages/train_stage.cpp) is registered by its own commit.
  if (("\n" + run("help stages").output).find("\n  train ") == std::string::npos)
    GTEST_SKIP() << "no train stage in this build";
  Scratch s;
  const std::string recipe = write_recipe(s);
  const std::string full = s.path("full");
  auto r = run("run " + recipe + " --out " + full);
  ASSERT_EQ(r.code, 0) << r.output;
  const json reference = report(full);
  const auto reference_weights = secateur::io::load_weights(full + "/export");

  // 0: the run directory exists, no checkpoint yet; k > 0: checkpoint k has just been committed.
  int killed = 0, resumed_identical = 0;
  for (int point : {0, 2, 4, 6}) {
    SCOPED_TRACE("killed at point " + std::to_string(point));
    const std::string out = s.path("killed-" + std::to_string(point));
    const bool was_killed = kill_when(recipe, out, [&] {
      return point == 0 ? fsys::exists(out + "/report.json") : fsys::exists(checkpoint_dir(out, point));
    });
    ASSERT_TRUE(was_killed) << "the run finished before point " << point;
    ++killed;
    // Whatever the moment, report.json is a whole JSON document and no temp file is left visible
    // as a checkpoint.
    EXPECT_NO_THROW(report(out)) << fsys::read_file(out + "/report.json");
    if (fsys::is_directory(out + "/checkpoints/1-train"))
      for (const auto& name : fsys::list_directory(out + "/checkpoints/1-train"))
        EXPECT_TRUE(name.rfind("step-", 0) == 0 || name.rfind(".tmp-", 0) == 0) << name;

    r = run("run --resume " + out);
    ASSERT_EQ(r.code, 0) << r.output;
    const json done = report(out);
    EXPECT_EQ(done["status"], "completed");
    const auto& results = done["stages"][0]["results"];
    EXPECT_EQ(results["steps"], kSteps);
    if (point > 0) EXPECT_GE(results["resumed_from_step"].get<int>(), point);
    const bool same_loss = results["train_loss"] == reference["stages"][0]["results"]["train_loss"];
    EXPECT_TRUE(same_loss) << results.dump() << "\nvs\n" << reference["stages"][0]["results"].dump();
    const auto weights = secateur::io::load_weights(out + "/export");
    bool same_weights = weights.size() == reference_weights.size();
    for (const auto& [name, t] : reference_weights)
      same_weights = same_weights && weights.count(name) && torch::equal(t, weights.at(name));
    EXPECT_TRUE(same_weights);
    resumed_identical += same_loss && same_weights;
  }
  std::printf("kill/resume: %d runs killed with SIGKILL, %d resumed to identical loss and weights\n", killed,
              resumed_identical);
}
