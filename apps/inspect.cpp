// `secateur inspect MODEL`: what a model is (family, per-layer shapes, parameters, prunable
// groups, FLOPs per token) without writing a recipe.
#include <boost/program_options.hpp>

#include <cstdio>

#include "apps/commands.h"
#include "model/inspect.h"
#include "model/model.h"
#include "run/runtime.h"
#include "util/error.h"
#include "util/strings.h"

namespace po = boost::program_options;

namespace secateur::cli {

int inspect(const std::vector<std::string>& args) {
  po::options_description options("inspect");
  options.add_options()("model", po::value<std::string>(), "model directory or file")(
      "device", po::value<std::string>()->default_value("cpu"), "cpu, cuda or cuda:N")(
      "seq-len", po::value<int64_t>()->default_value(0), "context length for FLOPs (0: min(max positions, 2048))");
  po::positional_options_description positional;
  positional.add("model", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(options).positional(positional).run(), vm);
  po::notify(vm);
  if (!vm.count("model")) throw UsageError("inspect: missing MODEL (a directory with config.json, or a weights file)");
  const std::string path = vm["model"].as<std::string>();
  const std::string device = runtime::validate_device(vm["device"].as<std::string>());
  runtime::set_threads(0);
  const bool torchscript = strings::ends_with(path, ".pt") || strings::ends_with(path, ".pth") || strings::ends_with(path, ".ts");
  if (torchscript)
    std::printf("note: %s is TorchScript, which can run code when loaded: load files from others as safetensors.\n",
                path.c_str());
  auto model = model::load_model(path, {device, std::nullopt});
  std::printf("%s\n%s", path.c_str(), model::describe(*model, vm["seq-len"].as<int64_t>()).c_str());
  return 0;
}

}  // namespace secateur::cli
