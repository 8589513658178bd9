// The train stage through the `secateur` binary: a run stopped mid-way (interrupt_after_steps, or
// a real SIGTERM to the child process) and resumed with `secateur run --resume` ends bitwise
// where an uninterrupted run ends; the pretraining recipes run at tiny scale on the CPU.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "io/weights.h"
#include "util/fs.h"
#include "support/shell.h"

namespace secateur::train {
namespace {

using json = nlohmann::json;

using Result = secateur::testing::ShellResult;

// Runs from the source tree (recipes name repository paths, as README's commands do), with the
// token cache in a scratch directory.
Result cli(const std::string& args) {
  const std::string cmd = "cd " + std::string(SECATEUR_SOURCE_DIR) + " && SECATEUR_CACHE_DIR=" + fs::temp_directory() +
                          "/secateur-train-cli-cache " + std::string(SECATEUR_BINARY) + " " + args;
  return secateur::testing::shell(cmd);
}

std::string temp(const std::string& tag) {
  const std::string p = fs::join(fs::temp_directory(), "secateur-train-cli-" + tag + "-" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

std::string write_recipe(const std::string& tag, const std::string& text) {
  const std::string p = temp(tag) + ".yaml";
  std::ofstream(p) << text;
  return p;
}

json report(const std::string& dir) { return json::parse(fs::read_file(dir + "/report.json")); }

const std::string kSrc = SECATEUR_SOURCE_DIR;
const std::string kFixtures = SECATEUR_FIXTURES;

// A GPT-2 fixture (dropout 0.1) fine-tuned on KJV blocks; then exported.
std::string gpt2_recipe(int64_t steps, const std::string& extra = "", int eval_every = 3, int checkpoint_every = 4) {
  return "name: train_cli\nseed: 3\ndevice: cpu\nthreads: 1\n"
         "model: {path: " + kFixtures + "/models/gpt2}\n"
         "data: {name: kjv, tokenizer: " + kFixtures + "/data/kjv_unigram128.model, seq_len: 16, batch_size: 2}\n"
         "stages:\n"
         "  - train:\n"
         "      steps: " + std::to_string(steps) + "\n"
         "      grad_accumulation: 2\n"
         "      max_examples: 64\n"
         "      log_every: 2\n"
         "      optimizer: {lr: 3.0e-3, weight_decay: 0.01}\n"
         "      schedule: {name: cosine, warmup_steps: 2}\n"
         "      eval: {every: " + std::to_string(eval_every) + ", max_batches: 2}\n"
         "      checkpoint: {every: " + std::to_string(checkpoint_every) + ", keep_last: 1}\n" + extra +
         "  - export: {format: hf}\n";
}

void expect_same_weights(const std::string& a, const std::string& b) {
  const auto wa = io::load_weights(a + "/export"), wb = io::load_weights(b + "/export");
  ASSERT_EQ(wa.size(), wb.size());
  for (const auto& [k, v] : wa) EXPECT_TRUE(torch::equal(v, wb.at(k))) << k;
}

TEST(TrainCli, StoppedThenResumedEqualsUninterruptedBitwise) {
  const std::string full = temp("full"), part = temp("part");
  auto r = cli("run " + write_recipe("full", gpt2_recipe(7)) + " --out " + full);
  ASSERT_EQ(r.code, 0) << r.output;

  r = cli("run " + write_recipe("part", gpt2_recipe(7, "      interrupt_after_steps: 5\n")) + " --out " + part);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("resume with: secateur run --resume " + part), std::string::npos) << r.output;
  json rep = report(part);
  EXPECT_EQ(rep["status"], "interrupted");
  EXPECT_EQ(rep["stages"][0]["status"], "interrupted");
  EXPECT_EQ(rep["stages"][1]["status"], "pending");  // export did not run
  EXPECT_EQ(rep["stages"][0]["results"]["steps"], 5);

  r = cli("run --resume " + part);
  ASSERT_EQ(r.code, 0) << r.output;
  rep = report(part);
  const json ref = report(full);
  EXPECT_EQ(rep["status"], "completed");
  EXPECT_EQ(rep["stages"][0]["results"]["resumed_from_step"], 5);
  EXPECT_EQ(rep["stages"][0]["results"]["steps"], 7);
  EXPECT_EQ(rep["stages"][0]["results"]["train_loss"].get<double>(), ref["stages"][0]["results"]["train_loss"].get<double>());
  EXPECT_EQ(rep["stages"][0]["results"]["eval"], ref["stages"][0]["results"]["eval"]);
  expect_same_weights(part, full);
}

// Distillation runs only when the recipe asks for it (distill: {teacher: ...}).
TEST(TrainCli, DistillsOnlyWhenAsked) {
  const std::string plain = temp("plain"), distilled = temp("distilled");
  auto r = cli("run " + write_recipe("plain", gpt2_recipe(2, "", 0, 0)) + " --out " + plain);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(fs::read_file(plain + "/metrics.jsonl").find("distill"), std::string::npos);
  r = cli("run " + write_recipe("distilled", gpt2_recipe(2, "      distill: {teacher: dense, alpha: 0.5}\n", 0, 0)) +
          " --out " + distilled);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(fs::read_file(distilled + "/metrics.jsonl").find("distill_kd"), std::string::npos);
}

TEST(TrainCli, SigtermSavesACheckpointExitsZeroAndResumes) {
  const std::string dir = temp("sigterm");
  const int64_t total = 300;
  const std::string recipe = write_recipe("sigterm", gpt2_recipe(total, "", 0, 0));
  const std::string log = temp("sigterm") + ".log";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::freopen(log.c_str(), "w", stdout);
    ::dup2(::fileno(stdout), 2);
    if (::chdir(SECATEUR_SOURCE_DIR) != 0) ::_exit(126);
    ::setenv("SECATEUR_CACHE_DIR", (fs::temp_directory() + "/secateur-train-cli-cache").c_str(), 1);
    ::execl(SECATEUR_BINARY, SECATEUR_BINARY, "run", recipe.c_str(), "--out", dir.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Wait until training has logged a step, then send SIGTERM as SLURM would.
  bool training = false;
  for (int i = 0; i < 600 && !training; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    training = fs::exists(dir + "/metrics.jsonl") && fs::read_file(dir + "/metrics.jsonl").find("\"loss\"") != std::string::npos;
  }
  ASSERT_TRUE(training) << fs::read_file(log);
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  const std::string out = fs::read_file(log);
  ASSERT_TRUE(WIFEXITED(status)) << out;
  EXPECT_EQ(WEXITSTATUS(status), 0) << out;
  EXPECT_NE(out.find("resume with: secateur run --resume " + dir), std::string::npos) << out;
  const json rep = report(dir);
  EXPECT_EQ(rep["status"], "interrupted");
  const int64_t stopped = rep["stages"][0]["results"]["interrupted_at_step"].get<int64_t>();
  EXPECT_GT(stopped, 0);
  const auto ckpts = fs::list_directory(dir + "/checkpoints/1-train");
  char name[32];
  std::snprintf(name, sizeof name, "step-%08lld", static_cast<long long>(stopped));
  EXPECT_NE(std::find(ckpts.begin(), ckpts.end(), name), ckpts.end()) << name;
  // A different total is a different schedule: refused with a clear message, not resumed wrongly.
  auto r = cli("run --resume " + dir + " --set stages.0.train.steps=" + std::to_string(total + 1));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("different training configuration"), std::string::npos) << r.output;
  // The run's own recipe continues from the checkpoint to the end.
  r = cli("run --resume " + dir);
  ASSERT_EQ(r.code, 0) << r.output;
  const json done = report(dir);
  EXPECT_EQ(done["status"], "completed");
  EXPECT_EQ(done["stages"][0]["results"]["resumed_from_step"], stopped);
  EXPECT_EQ(done["stages"][0]["results"]["steps"], total);
}

TEST(TrainCli, NonFiniteLossFailsTheRunNamingTheStep) {
  const std::string dir = temp("nan");
  const std::string recipe = gpt2_recipe(5, "      max_grad_norm: 0\n");
  std::string bad = recipe;
  bad.replace(bad.find("lr: 3.0e-3"), 10, "lr: 1.0e30");
  bad.replace(bad.find("warmup_steps: 2"), 15, "warmup_steps: 0");
  const auto r = cli("run " + write_recipe("nan", bad) + " --out " + dir + " --set stages.0.train.optimizer.name=sgd");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("non-finite"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("at step 2 of 5"), std::string::npos) << r.output;
  EXPECT_EQ(report(dir)["status"], "failed");
}

// Runs a pretraining recipe at tiny scale on the CPU (12 steps of 4 × 32 tokens) and returns
// the run directory after checking that the loss fell, a checkpoint and the export exist.
std::string pretrain_tiny(const std::string& recipe, const std::string& tokenizer_file) {
  const std::string dir = temp(recipe);
  const auto r = cli("run " + kSrc + "/recipes/" + recipe + ".yaml --out " + dir +
                     " --device cpu --threads 1 --set data.seq_len=32 --set data.batch_size=4"
                     " --set stages.0.train.epochs=1 --set stages.0.train.max_examples=48"
                     " --set stages.0.train.schedule.warmup_steps=0 --set stages.0.train.schedule.warmup_ratio=0"
                     " --set stages.0.train.log_every=1 --set stages.0.train.eval.every=0"
                     " --set stages.0.train.eval.max_batches=2 --set stages.0.train.optimizer.lr=3.0e-3"
                     " --set stages.1.eval.max_examples=8 --set stages.1.eval.max_tokens=512");
  EXPECT_EQ(r.code, 0) << r.output;
  if (r.code != 0) return dir;
  double first = -1, last = -1;  // first and last logged training losses
  std::istringstream lines(fs::read_file(dir + "/metrics.jsonl"));
  for (std::string line; std::getline(lines, line);) {
    const json e = json::parse(line);
    if (e.value("stage", "") == "train" && e.contains("values") && e["values"].contains("loss") && e["values"].contains("lr")) {
      if (first < 0) first = e["values"]["loss"].get<double>();
      last = e["values"]["loss"].get<double>();
    }
  }
  EXPECT_GT(first, 0) << recipe;
  EXPECT_LT(last, first - 0.5) << recipe << ": 12 steps from random init should cut the loss well below ln(4096) = 8.3";
  const json rep = report(dir);
  EXPECT_EQ(rep["stages"][0]["results"]["steps"], 12);
  EXPECT_TRUE(fs::exists(rep["stages"][0]["results"]["checkpoint"].get<std::string>() + "/model.safetensors"));
  EXPECT_TRUE(fs::exists(dir + "/export/model.safetensors"));
  EXPECT_TRUE(fs::exists(dir + "/export/" + tokenizer_file)) << fs::list_directory(dir + "/export").size();
  return dir;
}

TEST(TrainCli, PretrainGptRecipeAtTinyScaleLearnsAndExports) { pretrain_tiny("pretrain_kjv_gpt", "tokenizer.model"); }

TEST(TrainCli, PretrainBertRecipeAtTinyScaleLearnsAndExports) {
  const std::string dir = pretrain_tiny("pretrain_kjv_bert", "tokenizer.json");
  EXPECT_TRUE(report(dir)["stages"][0]["results"]["eval"].contains("accuracy"));  // masked-token accuracy
  // Then the classification half, from that export, with a new head.
  const std::string cls = temp("pretrain-bert-cls");
  const auto r = cli("run " + kSrc + "/recipes/pretrain_kjv_bert_cls.yaml --out " + cls + " --device cpu --threads 1" +
                     " --set model.path=" + dir + "/export --set data.seq_len=32 --set data.batch_size=4" +
                     " --set stages.0.train.steps=6 --set stages.0.train.max_examples=64 --set stages.0.train.log_every=1" +
                     " --set stages.0.train.eval.max_batches=2 --set stages.1.eval.max_examples=16");
  ASSERT_EQ(r.code, 0) << r.output;
  const json rep = report(cls);
  EXPECT_EQ(rep["stages"][0]["results"]["steps"], 6);
  EXPECT_TRUE(rep["stages"][0]["results"]["eval"].contains("macro_f1"));
  EXPECT_TRUE(rep["stages"][1]["results"].contains("accuracy"));
  EXPECT_TRUE(fs::exists(cls + "/export/model.safetensors"));
  EXPECT_NE(fs::read_file(cls + "/export/config.json").find("BertForSequenceClassification"), std::string::npos);
}

}  // namespace
}  // namespace secateur::train
