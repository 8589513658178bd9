#pragma once
// Where this process sits among the processes of one data-parallel job, read from the variables
// its launcher sets:
//   torchrun / torch.distributed.run:  RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
//   SLURM (srun):                      SLURM_PROCID, SLURM_LOCALID, SLURM_NTASKS,
//                                      SLURM_JOB_NODELIST (the master is its first host),
//                                      MASTER_ADDR / MASTER_PORT when the batch script sets them
// torchrun's variables win when both are present (torchrun inside an allocation).
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace secateur::dist {

enum class Launcher { none, torchrun, slurm };
std::string launcher_name(Launcher launcher);

struct World {
  int64_t rank = 0;        // global rank, 0 .. world_size-1
  int64_t local_rank = 0;  // rank on this node: picks the CUDA device
  int64_t world_size = 1;
  std::string master_addr = "127.0.0.1";  // where rank 0 serves the TCP rendezvous store
  int master_port = 29500;
  Launcher launcher = Launcher::none;

  bool distributed() const { return world_size > 1; }
  bool is_main() const { return rank == 0; }
};

// A variable lookup: the process environment, or a map in tests.
using Environment = std::function<std::optional<std::string>(const std::string& name)>;
Environment process_environment();

// The world the launcher describes; {rank 0 of 1} when no launcher is seen. SLURM's variables are
// read only when `use_slurm` (the recipe has a `distributed:` section): a plain `srun secateur
// run` of several independent tasks must not join a group. Throws UserError naming the variable
// when one is malformed or out of range, or when WORLD_SIZE > 1 comes without MASTER_ADDR/PORT.
// Without MASTER_PORT under SLURM the port is 29500 + SLURM_JOB_ID mod 10000, so that two jobs
// sharing a node do not collide.
World world_from_environment(const Environment& env, bool use_slurm);

// SLURM's compressed host lists, in order: "node[01-03,07],gpu-a[1-2]-ib,login" →
// node01 node02 node03 node07 gpu-a1-ib gpu-a2-ib login. Ranges keep the zero padding of their
// lower bound; several bracket groups in one name multiply ("r[1-2]n[1-2]" → r1n1 r1n2 r2n1 r2n2).
// Throws UserError on unbalanced brackets, empty names, or ranges that are not lo-hi with lo ≤ hi.
std::vector<std::string> expand_hostlist(const std::string& list);
std::string first_host(const std::string& list);

}  // namespace secateur::dist
