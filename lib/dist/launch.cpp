#include "dist/launch.h"

#include "run/run_dir.h"
#include "util/log.h"

namespace secateur::dist {

recipe::SchemaPtr distributed_schema() {
  using recipe::Schema;
  return Schema::structure()
      ->field("backend", Schema::enumeration({"auto", "nccl", "gloo"}),
              "Collective backend: nccl between GPUs, gloo between CPUs; auto = nccl when the device is CUDA, else gloo.",
              "auto")
      ->field("timeout_s", Schema::number()->min(1),
              "Seconds a rank waits for the others (rendezvous, each collective) before failing instead of hanging.",
              "1800")
      ->field("bucket_mb", Schema::number()->min(0, true),
              "Gradients are all-reduced in buckets of this many MiB (flattened per dtype), all in flight at once.", "25");
}

GroupOptions group_options(const recipe::Value* section, const std::string& device) {
  GroupOptions o;
  std::string backend = "auto";
  double timeout_s = 1800, bucket_mb = 25;
  if (section) {
    backend = section->get_string("backend", backend);
    if (const auto* v = section->find("timeout_s")) timeout_s = v->as_double();
    if (const auto* v = section->find("bucket_mb")) bucket_mb = v->as_double();
  }
  o.backend = resolve_backend(backend, device);
  o.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000.0));
  o.bucket_bytes = std::max<int64_t>(1, static_cast<int64_t>(bucket_mb * 1024.0 * 1024.0));
  return o;
}

std::string device_for_rank(const std::string& device, int64_t local_rank) {
  return device == "cuda" ? "cuda:" + std::to_string(local_rank) : device;
}

std::unique_ptr<Session> join_for_run(const recipe::Recipe& recipe, run::RunOptions& options) {
  const recipe::Value* section = recipe.tree.find("distributed");
  const World world = world_from_environment(process_environment(), section != nullptr);
  if (!world.distributed() || options.dry_run) return nullptr;

  const std::string device = device_for_rank(recipe.tree.at("device").text(), world.local_rank);
  auto session = std::make_unique<Session>(ProcessGroup::over_tcp(world, group_options(section, device)));
  options.rank = world.rank;
  options.device = device;
  // The default run directory is named after the time: rank 0's name for everyone.
  if (options.out.empty())
    options.out = session->group().share_string("run_dir", world.is_main() ? run::RunDir::default_path(options.runs_root, recipe.name()) : "");
  if (!world.is_main()) log::set_level(log::Level::warn);  // one copy of the progress: rank 0's
  return session;
}

}  // namespace secateur::dist
