// secateur — structured pruning of transformers, driven by YAML recipes.
// Exit codes: 0 ok, 1 user error (bad recipe, bad file), 2 usage error, 3 internal failure.
#include <boost/program_options.hpp>
#include <torch/torch.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "util/error.h"
#include "util/log.h"

namespace po = boost::program_options;
using secateur::UsageError;
using secateur::UserError;

namespace {

const char* kUsage =
    "usage: secateur <command> [options]\n"
    "\n"
    "commands:\n"
    "  run RECIPE [--set KEY=VALUE]... [--out DIR] [--device cpu|cuda|cuda:N] [--threads N]\n"
    "             [--dry-run] [--force]          run a recipe\n"
    "  run --resume RUN_DIR                      continue an interrupted run\n"
    "  sweep RECIPE --grid KEY=[v1,v2,...]... [--set K=V]... (--local | --slurm [--submit]) [--out DIR] [--only POINT]\n"
    "                                            one run per grid point, here or as a SLURM job array\n"
    "  validate RECIPE [--set KEY=VALUE]...      check a recipe and print it resolved\n"
    "  inspect MODEL [--device D] [--seq-len N]   describe a model directory or file\n"
    "  report RUN_DIR... [--out DIR]             merge runs into one comparison table\n"
    "  help [TOPIC]                              topics: recipe, stages, stage NAME, section NAME\n"
    "  --version                                 versions of secateur and LibTorch, CUDA\n";

std::string command_line(int argc, char** argv) {
  std::string out;
  for (int i = 0; i < argc; ++i) {
    if (i) out += ' ';
    std::string a = argv[i];
    bool plain = !a.empty() && a.find_first_of(" '\"$`\\{}[]*?;&|<>()") == std::string::npos;
    out += plain ? a : "'" + a + "'";
  }
  return out;
}

int dispatch(int argc, char** argv) {
  if (argc < 2) throw UsageError("missing command\n" + std::string(kUsage));
  const std::string command = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "--version" || command == "version") return secateur::cli::version();
  if (command == "-h" || command == "--help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (command == "help") return secateur::cli::help(args);
  if (command == "run") return secateur::cli::run(args, command_line(argc, argv));
  if (command == "validate") return secateur::cli::validate(args);
  if (command == "inspect") return secateur::cli::inspect(args);
  if (command == "report") return secateur::cli::report(args);
  if (command == "sweep") return secateur::cli::sweep(args);
  throw UsageError("unknown command '" + command + "'\n" + std::string(kUsage));
}

// First line only: c10 errors append a C++ backtrace that means nothing to a user.
std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace

int main(int argc, char** argv) {
  try {
    return dispatch(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "secateur: %s\n", e.what());
    if (std::string(e.what()).find("usage:") == std::string::npos) std::fprintf(stderr, "(secateur --help for usage)\n");
    return 2;
  } catch (const po::error& e) {
    std::fprintf(stderr, "secateur: %s\n(secateur --help for usage)\n", e.what());
    return 2;
  } catch (const UserError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "secateur: internal error (LibTorch): %s\n", first_line(e.what_without_backtrace()).c_str());
    return 3;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "secateur: internal error: %s\n", first_line(e.what()).c_str());
    return 3;
  }
}
