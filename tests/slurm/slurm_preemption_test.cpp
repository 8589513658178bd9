// Preemption under a real SLURM cluster (local_slurm.h). A training run submitted through
// `secateur sweep --slurm --submit` is stopped the two ways a cluster stops a job:
//  - `scancel --batch --signal=TERM`: the SIGTERM reaches secateur (the batch script execs it),
//    which checkpoints, exits 0 (the job COMPLETED, exit code 0:0) and leaves an interrupted,
//    resumable report; `sbatch --wrap 'exec secateur run --resume RUN_DIR'` finishes it;
//  - `scontrol requeue`: SLURM kills and requeues the task, and the requeued task resumes its own
//    run directory by itself; submitting the sweep once more skips the completed point.
// Either way the final training loss, eval metrics and exported weights equal bitwise those of an
// uninterrupted run of the same recipe outside SLURM. Label `slurm`.
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <future>
#include <string>

#include "io/weights.h"
#include "local_slurm.h"
#include "run/sweep.h"

using namespace secateur;
using namespace secateur::slurm_test;
using json = nlohmann::json;

namespace {

constexpr int kSteps = 1000;
const std::string kBinary = SECATEUR_BINARY;

json report(const std::string& run_dir) { return json::parse(fs::read_file(fs::join(run_dir, "report.json"))); }

class Preemption : public LocalSlurm {
 protected:
  void SetUp() override {
    LocalSlurm::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    recipe_ = write_recipe();
    // The uninterrupted run, outside SLURM, while the cluster runs the one the test stops.
    reference_ = std::async(std::launch::async, [this] {
      return shell(kBinary + " run " + recipe_ + " --out " + fs::join(dir_, "reference"));
    });
  }

  // The GPT-2 fixture trained on KJV for kSteps steps (seconds on one core), so that a signal sent
  // once training has logged its first loss lands mid-run; final eval, then export.
  std::string write_recipe() const {
    const std::string fixtures = SECATEUR_FIXTURES;
    const std::string path = fs::join(dir_, "train.yaml");
    fs::write_atomic(path, "name: slurm_preemption\nseed: 3\ndevice: cpu\nthreads: 1\n"
                           "model: {path: " + fixtures + "/models/gpt2}\n"
                           "data: {name: kjv, tokenizer: " + fixtures + "/data/kjv_unigram128.model, seq_len: 32, batch_size: 4}\n"
                           "stages:\n"
                           "  - train:\n"
                           "      steps: " + std::to_string(kSteps) + "\n"
                           "      max_examples: 64\n"
                           "      log_every: 10\n"
                           "      optimizer: {lr: 3.0e-3, weight_decay: 0.01}\n"
                           "      schedule: {name: cosine, warmup_steps: 2}\n"
                           "      eval: {every: 0, max_batches: 2}\n"
                           "      checkpoint: {every: 100, keep_last: 1}\n"
                           "  - export: {format: hf}\n");
    return path;
  }

  // Submits the recipe as a one-point sweep (the batch script users get) and waits until its
  // training has logged a loss; returns the job id.
  std::string submit_and_wait_for_training(const std::string& sweep) {
    Result submit = shell(kBinary + " sweep " + recipe_ + " --grid 'seed=[3]' --slurm --submit --out " + sweep);
    EXPECT_EQ(submit.code, 0) << submit.output;
    const std::string job = field_after(submit.output, "submitted job array ");
    const std::string metrics = fs::join(run_dir(sweep), "metrics.jsonl");
    const bool training = wait_until(
        [&] { return fs::exists(metrics) && fs::read_file(metrics).find("\"loss\"") != std::string::npos; },
        job_timeout_s());
    EXPECT_TRUE(training) << "job '" << job << "' never logged a training step:\n" << task_log(sweep, job);
    return training ? job : "";
  }

  static std::string run_dir(const std::string& sweep) { return fs::join(sweep, "seed=3"); }

  static std::string task_log(const std::string& sweep, const std::string& job) {
    const std::string path = fs::join(sweep, "slurm-" + job + "_0.out");
    return fs::exists(path) ? fs::read_file(path) : "(no " + path + ")";
  }

  // The job left the queue, COMPLETED with exit code 0 after `restarts` requeues.
  void expect_completed_with_exit_code_zero(const std::string& job, int restarts) {
    ASSERT_TRUE(wait_for_job(job, job_timeout_s())) << "job " << job << " still queued:\n" << shell("squeue").output;
    const std::string record = job_record(job);
    EXPECT_EQ(field_after(record, "JobState="), "COMPLETED") << record;
    EXPECT_EQ(field_after(record, "ExitCode="), "0:0") << record;
    EXPECT_EQ(field_after(record, "Restarts="), std::to_string(restarts)) << record;
  }

  // Ends equal to the uninterrupted run: training loss, eval metrics, bitwise the same weights.
  void expect_equal_to_reference(const std::string& run_dir) {
    const Result ref = reference_.get();
    ASSERT_EQ(ref.code, 0) << ref.output;
    const std::string reference_dir = fs::join(dir_, "reference");
    const json done = report(run_dir), want = report(reference_dir);
    EXPECT_EQ(done["status"], "completed");
    const auto &got = done["stages"][0]["results"], &expected = want["stages"][0]["results"];
    EXPECT_EQ(got["steps"], kSteps);
    EXPECT_EQ(got["train_loss"].get<double>(), expected["train_loss"].get<double>());
    EXPECT_EQ(got["eval"], expected["eval"]);
    const auto weights = io::load_weights(fs::join(run_dir, "export"));
    const auto reference_weights = io::load_weights(fs::join(reference_dir, "export"));
    ASSERT_EQ(weights.size(), reference_weights.size());
    for (const auto& [name, tensor] : reference_weights)
      EXPECT_TRUE(weights.count(name) && torch::equal(tensor, weights.at(name))) << name;
  }

  std::string recipe_;
  std::future<Result> reference_;
};

// The step a stopped run reports, after checking it is an interrupted, resumable run with a
// checkpoint at exactly that step.
int64_t expect_interrupted_with_checkpoint(const std::string& run_dir) {
  const json rep = report(run_dir);
  EXPECT_EQ(rep["status"], "interrupted");
  EXPECT_EQ(rep["resume"], "secateur run --resume " + run_dir);
  const int64_t stopped = rep["stages"][0]["results"].value("interrupted_at_step", int64_t{-1});
  EXPECT_GT(stopped, 0);
  EXPECT_LT(stopped, kSteps);
  char name[32];
  std::snprintf(name, sizeof name, "step-%08lld", static_cast<long long>(stopped));
  EXPECT_TRUE(fs::exists(fs::join(run_dir, "checkpoints/1-train/" + std::string(name) + "/model.safetensors"))) << name;
  return stopped;
}

}  // namespace

TEST_F(Preemption, ScancelTermCheckpointsExitsZeroAndAResubmittedResumeEqualsAnUninterruptedRun) {
  const std::string sweep = fs::join(dir_, "sweep");
  const std::string job = submit_and_wait_for_training(sweep);
  ASSERT_FALSE(job.empty());
  // --batch: without it scancel signals only a job's srun steps, never the batch script (here secateur).
  Result cancel = shell("scancel --batch --signal=TERM " + job);
  ASSERT_EQ(cancel.code, 0) << cancel.output;
  expect_completed_with_exit_code_zero(job, 0);
  const std::string run = run_dir(sweep);
  const int64_t stopped = expect_interrupted_with_checkpoint(run);
  EXPECT_NE(task_log(sweep, job).find("resume with: secateur run --resume " + run), std::string::npos)
      << task_log(sweep, job);

  const std::string resume_log = fs::join(dir_, "resume.out");
  Result resubmit = shell("sbatch --parsable --output=" + resume_log + " --wrap " +
                          run::shell_quote("exec " + kBinary + " run --resume " + run));
  ASSERT_EQ(resubmit.code, 0) << resubmit.output;
  const std::string resumed_job = resubmit.output.substr(0, resubmit.output.find_first_of(";\n"));
  expect_completed_with_exit_code_zero(resumed_job, 0);
  EXPECT_EQ(report(run)["stages"][0]["results"]["resumed_from_step"], stopped) << fs::read_file(resume_log);
  expect_equal_to_reference(run);
}

TEST_F(Preemption, RequeuedTaskResumesItsOwnRunAndEqualsAnUninterruptedRun) {
  const std::string sweep = fs::join(dir_, "sweep");
  const std::string job = submit_and_wait_for_training(sweep);
  ASSERT_FALSE(job.empty());
  const std::string task = job + "_0";
  Result requeue = shell("scontrol requeue " + task);
  ASSERT_EQ(requeue.code, 0) << requeue.output;
  // SLURM holds a requeued job back for two minutes (Reason=BeginTime); start it now instead.
  ASSERT_TRUE(wait_until([&] { return shell("squeue -h -j " + task + " -o %T").output == "PENDING\n"; }, 60));
  Result start = shell("scontrol update JobId=" + task + " StartTime=now");
  ASSERT_EQ(start.code, 0) << start.output;
  expect_completed_with_exit_code_zero(job, 1);

  // The task's log (appended to by both attempts): the first stopped at step N, the second resumed
  // the same run directory from there.
  const std::string log = task_log(sweep, job);
  const std::string stopped = field_after(log, "interrupted at step ");
  ASSERT_FALSE(stopped.empty()) << log;
  EXPECT_NE(log.find("resuming " + run_dir(sweep)), std::string::npos) << log;
  EXPECT_EQ(report(run_dir(sweep))["stages"][0]["results"]["resumed_from_step"], std::stoll(stopped)) << log;
  expect_equal_to_reference(run_dir(sweep));

  // The whole sweep submitted again: the completed point is left as it is.
  const std::string finished = report(run_dir(sweep))["finished"].get<std::string>();
  Result again = shell("sbatch --parsable " + fs::join(sweep, "sweep.sbatch"));
  ASSERT_EQ(again.code, 0) << again.output;
  const std::string again_job = again.output.substr(0, again.output.find_first_of(";\n"));
  expect_completed_with_exit_code_zero(again_job, 0);
  EXPECT_NE(task_log(sweep, again_job).find("is already completed"), std::string::npos) << task_log(sweep, again_job);
  EXPECT_EQ(report(run_dir(sweep))["finished"], finished);
}
