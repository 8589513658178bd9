// World setup from launcher variables (torchrun, SLURM), SLURM host lists, the `distributed:`
// section, bucket plans, and the one-process identities of the dist helpers.
#include <gtest/gtest.h>

#include <map>

#include "dist/data_parallel.h"
#include "dist/dist.h"
#include "dist/launch.h"
#include "dist/world.h"
#include "model/model.h"
#include "recipe/value.h"
#include "util/error.h"

namespace secateur::dist {
namespace {

Environment env_of(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

// ---- host lists -------------------------------------------------------------------------------

TEST(HostList, ExpandsRangesKeepingZeroPadding) {
  EXPECT_EQ(expand_hostlist("node[01-04,07]"), (std::vector<std::string>{"node01", "node02", "node03", "node04", "node07"}));
  EXPECT_EQ(expand_hostlist("n[8-11]"), (std::vector<std::string>{"n8", "n9", "n10", "n11"}));
  EXPECT_EQ(expand_hostlist("gpu[098-101]"), (std::vector<std::string>{"gpu098", "gpu099", "gpu100", "gpu101"}));
}

TEST(HostList, SplitsTopLevelCommasAndKeepsSuffixes) {
  EXPECT_EQ(expand_hostlist("node[01-02],gpu-a[1-2]-ib,login"),
            (std::vector<std::string>{"node01", "node02", "gpu-a1-ib", "gpu-a2-ib", "login"}));
  EXPECT_EQ(expand_hostlist("single"), (std::vector<std::string>{"single"}));
}

TEST(HostList, SeveralBracketGroupsMultiply) {
  EXPECT_EQ(expand_hostlist("r[1-2]n[1,3]"), (std::vector<std::string>{"r1n1", "r1n3", "r2n1", "r2n3"}));
}

TEST(HostList, FirstHostIsTheMaster) {
  EXPECT_EQ(first_host("node[01-04,07]"), "node01");
  EXPECT_EQ(first_host("login,node[1-2]"), "login");
  EXPECT_EQ(first_host("c[100000-999999]"), "c100000");
}

TEST(HostList, MalformedListsAreUserErrors) {
  EXPECT_NE(error_of([] { expand_hostlist("node[01-03"); }).find("'[' without ']'"), std::string::npos);
  EXPECT_NE(error_of([] { expand_hostlist("node01]"); }).find("']' without '['"), std::string::npos);
  EXPECT_NE(error_of([] { expand_hostlist("node[3-1]"); }).find("ends before it starts"), std::string::npos);
  EXPECT_NE(error_of([] { expand_hostlist("node[a-b]"); }).find("is not N or LO-HI"), std::string::npos);
  EXPECT_NE(error_of([] { expand_hostlist("a,,b"); }).find("empty host name"), std::string::npos);
  EXPECT_NE(error_of([] { expand_hostlist("node[1-]"); }).find("is not N or LO-HI"), std::string::npos);
}

// ---- environment ------------------------------------------------------------------------------

TEST(WorldEnv, AloneWithoutLauncherVariables) {
  const World w = world_from_environment(env_of({}), true);
  EXPECT_EQ(w.rank, 0);
  EXPECT_EQ(w.world_size, 1);
  EXPECT_FALSE(w.distributed());
  EXPECT_EQ(w.launcher, Launcher::none);
}

TEST(WorldEnv, Torchrun) {
  const World w = world_from_environment(
      env_of({{"RANK", "5"}, {"LOCAL_RANK", "1"}, {"WORLD_SIZE", "8"}, {"MASTER_ADDR", "node01"}, {"MASTER_PORT", "29400"}}),
      false);
  EXPECT_EQ(w.launcher, Launcher::torchrun);
  EXPECT_EQ(w.rank, 5);
  EXPECT_EQ(w.local_rank, 1);
  EXPECT_EQ(w.world_size, 8);
  EXPECT_EQ(w.master_addr, "node01");
  EXPECT_EQ(w.master_port, 29400);
  EXPECT_FALSE(w.is_main());
}

TEST(WorldEnv, TorchrunWinsOverSlurmInsideAnAllocation) {
  const World w = world_from_environment(env_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"},
                                                 {"MASTER_PORT", "1234"}, {"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "4"},
                                                 {"SLURM_JOB_NODELIST", "b[1-2]"}}),
                                         true);
  EXPECT_EQ(w.launcher, Launcher::torchrun);
  EXPECT_EQ(w.world_size, 2);
  EXPECT_EQ(w.master_addr, "a");
}

TEST(WorldEnv, SlurmMasterIsTheFirstNodeAndThePortFollowsTheJob) {
  const auto env = env_of({{"SLURM_PROCID", "6"}, {"SLURM_LOCALID", "2"}, {"SLURM_NTASKS", "8"},
                           {"SLURM_JOB_NODELIST", "gpu[07-08]"}, {"SLURM_JOB_ID", "123456"}});
  const World w = world_from_environment(env, true);
  EXPECT_EQ(w.launcher, Launcher::slurm);
  EXPECT_EQ(w.rank, 6);
  EXPECT_EQ(w.local_rank, 2);
  EXPECT_EQ(w.world_size, 8);
  EXPECT_EQ(w.master_addr, "gpu07");
  EXPECT_EQ(w.master_port, 29500 + 123456 % 10000);
  // Without a `distributed:` section a multi-task srun is many independent runs.
  EXPECT_FALSE(world_from_environment(env, false).distributed());
}

TEST(WorldEnv, SlurmHonoursMasterAddrAndPort) {
  const World w = world_from_environment(env_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"MASTER_ADDR", "10.0.0.9"},
                                                 {"MASTER_PORT", "4000"}, {"SLURM_JOB_NODELIST", "x[1-2]"}}),
                                         true);
  EXPECT_EQ(w.master_addr, "10.0.0.9");
  EXPECT_EQ(w.master_port, 4000);
}

TEST(WorldEnv, BadValuesNameTheVariable) {
  auto torchrun = [](std::map<std::string, std::string> extra) {
    std::map<std::string, std::string> v{{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "29500"}};
    for (auto& [k, x] : extra) v[k] = x;
    return error_of([&] { world_from_environment(env_of(v), false); });
  };
  EXPECT_NE(torchrun({{"RANK", "2"}}).find("RANK=2: expected 0..1"), std::string::npos);
  EXPECT_NE(torchrun({{"WORLD_SIZE", "two"}}).find("WORLD_SIZE='two'"), std::string::npos);
  EXPECT_NE(torchrun({{"MASTER_PORT", "70000"}}).find("MASTER_PORT=70000"), std::string::npos);
  EXPECT_NE(torchrun({{"RANK", "-1"}}).find("RANK='-1'"), std::string::npos);
  EXPECT_NE(error_of([] { world_from_environment(env_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}}), false); }).find("MASTER_ADDR"),
            std::string::npos);
  EXPECT_NE(error_of([] { world_from_environment(env_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}}), true); })
                .find("SLURM_JOB_NODELIST"),
            std::string::npos);
  // One process needs no rendezvous.
  EXPECT_FALSE(world_from_environment(env_of({{"RANK", "0"}, {"WORLD_SIZE", "1"}}), false).distributed());
}

// ---- the `distributed:` section ---------------------------------------------------------------

TEST(DistributedSection, DefaultsAndBackendChoice) {
  const GroupOptions cpu = group_options(nullptr, "cpu");
  EXPECT_EQ(cpu.backend, Backend::gloo);
  EXPECT_EQ(cpu.timeout, std::chrono::milliseconds(1800 * 1000));
  EXPECT_EQ(cpu.bucket_bytes, 25 << 20);
  EXPECT_NE(error_of([] { resolve_backend("nccl", "cpu"); }).find("needs a CUDA device"), std::string::npos);
  EXPECT_NE(error_of([] { resolve_backend("mpi", "cpu"); }).find("expected auto, nccl or gloo"), std::string::npos);
  if (!backend_available(Backend::nccl)) {
    EXPECT_NE(error_of([] { resolve_backend("auto", "cuda:0"); }).find("not available in this build"), std::string::npos);
  }
  EXPECT_EQ(device_for_rank("cuda", 3), "cuda:3");
  EXPECT_EQ(device_for_rank("cuda:1", 3), "cuda:1");
  EXPECT_EQ(device_for_rank("cpu", 3), "cpu");
}

TEST(DistributedSection, SchemaFillsDefaultsAndRejectsBadValues) {
  const auto schema = distributed_schema();
  recipe::Diagnostics diags;
  const auto filled = schema->validate(recipe::Value::map(), "distributed", diags);
  ASSERT_TRUE(diags.empty());
  EXPECT_EQ(filled.get_string("backend", ""), "auto");
  const GroupOptions o = group_options(&filled, "cpu");
  EXPECT_EQ(o.bucket_bytes, 25 << 20);
  EXPECT_EQ(o.timeout, std::chrono::milliseconds(1800 * 1000));
  auto bad = recipe::Value::map();
  bad.set("backend", recipe::Value::scalar("mpi"));
  bad.set("timeout_s", recipe::Value::scalar("0"));
  recipe::Diagnostics errors;
  schema->validate(bad, "distributed", errors);
  EXPECT_EQ(errors.size(), 2u);
}

// ---- buckets ----------------------------------------------------------------------------------

TEST(Buckets, PerDtypeInOrderUpToTheSize) {
  std::vector<torch::Tensor> t{torch::zeros({10}), torch::zeros({10}, torch::kDouble), torch::zeros({10}),
                               torch::zeros({30}), torch::zeros({4}, torch::kDouble), torch::zeros({100})};
  // float32: 40 + 40 bytes fit in 120, + 120 more do not; float64: 80 + 32 fit; the 400-byte
  // tensor is a bucket alone.
  EXPECT_EQ(plan_buckets(t, 120), (std::vector<std::vector<size_t>>{{0, 2}, {1, 4}, {3}, {5}}));
  EXPECT_EQ(plan_buckets(t, 1 << 20), (std::vector<std::vector<size_t>>{{0, 2, 3, 5}, {1, 4}}));
}

// ---- alone ------------------------------------------------------------------------------------

TEST(Alone, HelpersAreTheOneProcessIdentity) {
  ASSERT_EQ(current(), nullptr);
  EXPECT_EQ(rank(), 0);
  EXPECT_EQ(world_size(), 1);
  EXPECT_TRUE(is_main());
  EXPECT_TRUE(owns(0) && owns(7));
  auto t = torch::arange(5.0);
  all_reduce_sum(t);
  EXPECT_TRUE(torch::equal(t, torch::arange(5.0)));
  auto m = model::load_model(std::string(SECATEUR_FIXTURES) + "/models/llama_gqa");
  auto sync = make_gradient_sync(*m);
  EXPECT_EQ(sync->world_size(), 1);
  EXPECT_EQ(dynamic_cast<DataParallelSync*>(sync.get()), nullptr);
}

}  // namespace
}  // namespace secateur::dist
