// A real SLURM cluster (scripts/slurm-local.sh, see local_slurm.h) runs a `secateur sweep
// --slurm --submit` job array end to end. Label `slurm`.
#include <nlohmann/json.hpp>

#include <string>

#include "local_slurm.h"

using namespace secateur;
using namespace secateur::slurm_test;

TEST_F(LocalSlurm, SweepJobArrayRunsEveryPointAndTheReportMergesThem) {
  const std::string sweep = fs::join(dir_, "sweep");
  const std::string bin = SECATEUR_BINARY;
  // The quickstart recipe as README gives it, with its perplexity cut to 2048 tokens per eval so
  // that three points run in seconds on a small CI machine.
  const std::string cmd = "cd " + std::string(SECATEUR_SOURCE_DIR) + " && " + bin +
                          " sweep recipes/quickstart.yaml --grid 'seed=[0,1,2]' --slurm --submit --out " + sweep +
                          " --set stages.1.eval.max_tokens=2048 --set stages.3.eval.max_tokens=2048"
                          " --set stages.1.eval.latency.repeats=1 --set stages.3.eval.latency.repeats=1 --set threads=1";
  Result submit = shell(cmd);
  ASSERT_EQ(submit.code, 0) << cmd << "\n" << submit.output;
  const std::string job = field_after(submit.output, "submitted job array ");
  ASSERT_FALSE(job.empty()) << submit.output;
  EXPECT_EQ(fs::read_file(fs::join(sweep, "slurm_jobs.txt")), job + "\n");

  const int timeout_s = job_timeout_s();
  ASSERT_TRUE(wait_for_job(job, timeout_s)) << "job " << job << " still queued/running after " << timeout_s << " s:\n"
                                            << shell("squeue; sinfo").output;

  for (int seed = 0; seed < 3; ++seed) {
    const std::string run = fs::join(sweep, "seed=" + std::to_string(seed));
    // SLURM ran this point: its array task's output file names the task and the command.
    const std::string task_log = fs::join(sweep, "slurm-" + job + "_" + std::to_string(seed) + ".out");
    ASSERT_TRUE(fs::exists(task_log)) << task_log;
    EXPECT_NE(fs::read_file(task_log).find("secateur sweep task " + std::to_string(seed) + " on "), std::string::npos)
        << fs::read_file(task_log);
    ASSERT_TRUE(fs::exists(fs::join(run, "report.json"))) << fs::read_file(task_log);
    auto report = nlohmann::json::parse(fs::read_file(fs::join(run, "report.json")));
    EXPECT_EQ(report["status"], "completed") << fs::read_file(task_log);
    EXPECT_EQ(report["seed"], seed);
    EXPECT_EQ(report["stages"].size(), 5u);
    EXPECT_TRUE(fs::exists(fs::join(run, "report.md")));
    EXPECT_TRUE(fs::exists(fs::join(run, "report.html")));
  }

  Result table = shell(bin + " report " + sweep);
  ASSERT_EQ(table.code, 0) << table.output;
  int rows = 0;
  for (const auto& name : {"seed=0", "seed=1", "seed=2"}) {
    const std::string row = "| " + std::string(name) + " |";
    EXPECT_NE(table.output.find(row), std::string::npos) << name << " missing from\n" << table.output;
  }
  for (size_t at = 0; (at = table.output.find("\n| seed=", at)) != std::string::npos; ++at) ++rows;
  EXPECT_EQ(rows, 3) << table.output;
}
