// Bad input never crashes: each class of mistake a user can make, through the `secateur` binary,
// exits 1 with the exact one-line message (no exception dump) and, where a run had started,
// leaves a readable report.json. Classes already covered elsewhere (unknown stage, an override
// past the end of a list, CUDA without a GPU: cli_test.cpp; empty dataset, sequence longer than
// the model's positions: eval_cli_test.cpp; every safetensors header defect: io/safetensors_test;
// disk full for fs::write_atomic: util/write_errors_test.cpp) are not repeated here.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>

#include "util/fs.h"
#include "support/shell.h"

namespace fsys = secateur::fs;  // POSIX: std::filesystem crashes against the torch wheel

namespace {

using Result = secateur::testing::ShellResult;

// `prefix`: a command the binary runs under (e.g. setpriv to drop root).
Result run(const std::string& args, const std::string& prefix = "") {
  const std::string cmd = prefix + SECATEUR_BINARY + " " + args;
  return secateur::testing::shell(cmd);
}

const std::string kFixtures = SECATEUR_FIXTURES;
const std::string kLlama = kFixtures + "/models/llama_gqa";

// A scratch directory per test, removed afterwards.
struct Scratch {
  std::string dir;
  Scratch() {
    std::string tmpl = fsys::join(fsys::temp_directory(), "secateur-bad-input-XXXXXX");
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    dir = tmpl;
  }
  ~Scratch() {
    ::chmod(dir.c_str(), 0755);
    fsys::remove_all(dir);
  }
  std::string path(const std::string& name) const { return fsys::join(dir, name); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path(name), std::ios::binary) << text;
    return path(name);
  }
  std::string recipe(const std::string& name, const std::string& model, const std::string& stages = "[inspect: {}]") const {
    return write(name + ".yaml", "model: {path: " + model + "}\nstages: " + stages + "\n");
  }
  // A model directory holding the fixture's files, with `config` and `weights` as given (empty:
  // the fixture's own).
  std::string model(const std::string& name, const std::string& config, const std::string& weights) const {
    const std::string d = path(name);
    fsys::create_directories(d);
    write(name + "/config.json", config.empty() ? fsys::read_file(kLlama + "/config.json") : config);
    write(name + "/model.safetensors", weights.empty() ? fsys::read_file(kLlama + "/model.safetensors") : weights);
    return d;
  }
};

bool no_exception_dump(const std::string& out) {
  return out.find("terminate called") == std::string::npos && out.find("what():") == std::string::npos &&
         out.find("frame #") == std::string::npos && out.find("Segmentation") == std::string::npos;
}

// Runs `recipe` into a fresh run directory and expects exit 1 with `message` as one line.
void expect_user_error(const Scratch& s, const std::string& recipe, const std::string& message) {
  const auto r = run("run " + recipe + " --out " + s.path(fsys::stem(recipe) + "-run") + " --threads 1");
  EXPECT_EQ(r.code, 1) << recipe << ": " << r.output;
  EXPECT_NE(r.output.find(message + "\n"), std::string::npos) << "expected: " << message << "\ngot: " << r.output;
  EXPECT_TRUE(no_exception_dump(r.output)) << r.output;
}

std::string replace_once(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  if (at == std::string::npos) throw std::runtime_error("fixture lacks '" + from + "'");
  return text.replace(at, from.size(), to);
}

}  // namespace

TEST(BadInput, MissingFiles) {
  Scratch s;
  expect_user_error(s, s.recipe("no-model", "/nonexistent/model"), "/nonexistent/model: no such file or directory");
  const std::string no_config = s.path("no-config");
  fsys::create_directories(no_config);
  s.write("no-config/model.safetensors", fsys::read_file(kLlama + "/model.safetensors"));
  expect_user_error(s, s.recipe("no-config", no_config), no_config + ": no config.json in this directory");
  const auto r = run("inspect /nonexistent/model");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("/nonexistent/model: no such file or directory\n"), std::string::npos) << r.output;
}

TEST(BadInput, DirectoryInsteadOfFile) {
  Scratch s;
  const std::string dir = s.path("recipe-dir");
  fsys::create_directories(dir);
  auto r = run("run " + dir);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find(dir + ": is a directory, expected a file\n"), std::string::npos) << r.output;
  // A model directory whose config.json is a directory.
  const std::string model = s.path("config-dir");
  fsys::create_directories(model + "/config.json");
  s.write("config-dir/model.safetensors", fsys::read_file(kLlama + "/model.safetensors"));
  expect_user_error(s, s.recipe("config-dir", model), model + "/config.json: is a directory, expected a file");
}

TEST(BadInput, TruncatedAndGarbageSafetensors) {
  Scratch s;
  const std::string weights = fsys::read_file(kLlama + "/model.safetensors");
  const std::string in_header = s.model("in-header", "", weights.substr(0, 1000));
  expect_user_error(s, s.recipe("in-header", in_header),
                    in_header + "/model.safetensors: header length 2136 runs past the end of the 1000-byte file (truncated?)");
  const std::string in_data = s.model("in-data", "", weights.substr(0, 100000));
  expect_user_error(s, s.recipe("in-data", in_data),
                    in_data + "/model.safetensors: tensor 'model.embed_tokens.weight': data_offsets end 98304 is beyond "
                              "the data buffer of 97856 bytes");
  const std::string garbage = s.model("garbage", "", std::string(5000, 'x'));
  expect_user_error(s, s.recipe("garbage", garbage),
                    garbage + "/model.safetensors: header length 8680820740569200760 exceeds the 100 MB limit (corrupt or "
                              "not a safetensors file)");
  const std::string empty = s.model("empty", "", "");
  s.write("empty/model.safetensors", "");
  expect_user_error(s, s.recipe("empty", empty),
                    empty + "/model.safetensors: not a safetensors file: 0 bytes, shorter than the 8-byte header length");
  const std::string bad_json = s.model("bad-json", "{\"model_type\": \"llama\", ", "");
  expect_user_error(s, s.recipe("bad-json", bad_json),
                    bad_json + "/config.json: not valid JSON ([json.exception.parse_error.101] parse error at line 1, "
                               "column 25: syntax error while parsing object key - unexpected end of input; expected string "
                               "literal)");
}

TEST(BadInput, ShapeAndDtypeMismatchBetweenConfigAndWeights) {
  Scratch s;
  const std::string config = fsys::read_file(kLlama + "/config.json");
  const std::string wider = s.model("wider", replace_once(config, "\"intermediate_size\": 200", "\"intermediate_size\": 208"), "");
  expect_user_error(s, s.recipe("wider", wider),
                    wider + ": tensor 'model.layers.0.mlp.gate_proj.weight' has shape [200, 96], expected [208, 96] from the config");
  // The first tensor's dtype rewritten in the header (same length, so every offset stays valid).
  const std::string weights = fsys::read_file(kLlama + "/model.safetensors");
  const std::string ints = s.model("ints", "", replace_once(weights, "\"dtype\":\"F32\"", "\"dtype\":\"I32\""));
  expect_user_error(s, s.recipe("ints", ints),
                    ints + ": tensor 'lm_head.weight' has dtype Int, expected a floating-point type (float32, bfloat16 or float16)");
}

TEST(BadInput, UnknownModelType) {
  Scratch s;
  const std::string config = fsys::read_file(kLlama + "/config.json");
  const std::string model = s.model("llamaa", replace_once(config, "\"model_type\": \"llama\"", "\"model_type\": \"llamaa\""), "");
  expect_user_error(s, s.recipe("llamaa", model),
                    model + "/config.json: key 'model_type' has unsupported value \"llamaa\" (expected one of bert, roberta, "
                            "gpt2, llama, mistral, qwen2)");
}

TEST(BadInput, RecipeTypeErrorsAreAllListedAndNothingRuns) {
  Scratch s;
  const std::string recipe = s.write("types.yaml", "model: {path: " + kLlama + "}\nseed: abc\nstages: [inspect: {per_layer: 3}]\n");
  const auto r = run("run " + recipe + " --out " + s.path("types-run"));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find(recipe + ":2:7: seed: expected a non-negative integer, got 'abc'\n" + recipe +
                          ":3:31: stages[0].inspect.per_layer: expected true or false, got '3'\n2 errors; nothing was run.\n"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(fsys::exists(s.path("types-run")));
}

TEST(BadInput, OverrideToAMissingKey) {
  Scratch s;
  const std::string recipe = s.recipe("override", kLlama);
  auto r = run("run " + recipe + " --set stages.0.inspect.nope=1 --out " + s.path("o1"));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("--set stages.0.inspect.nope=1: unknown key 'nope' in stages.0.inspect\n1 error; nothing was run.\n"),
            std::string::npos)
      << r.output;
  r = run("run " + recipe + " --set modle.path=x --out " + s.path("o2"));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("--set modle.path=x: unknown key 'modle' in the recipe — did you mean 'model'?\n"), std::string::npos)
      << r.output;
  EXPECT_FALSE(fsys::exists(s.path("o1")));
  EXPECT_FALSE(fsys::exists(s.path("o2")));
}

TEST(BadInput, OutOfRangeSparsity) {
  Scratch s;
  const auto expect_range_error = [&](const std::string& name, const std::string& target, const std::string& message) {
    const std::string recipe = s.recipe(name, kLlama, "[prune: {target: " + target + "}]");
    const auto r = run("run " + recipe + " --out " + s.path(name + "-run"));
    EXPECT_EQ(r.code, 1) << r.output;
    EXPECT_NE(r.output.find(recipe + message + "\n1 error; nothing was run.\n"), std::string::npos) << r.output;
  };
  expect_range_error("params", "{params: 1.2}", ":2:35: stages[0].prune.target.params: expected a number in [0, 1), got '1.2'");
  expect_range_error("heads", "{heads: 1.5}",
                     ":2:34: stages[0].prune.target.heads: expected a fraction in [0, 1) or a whole count, got '1.5'");
  expect_range_error("negative", "{ffn: -0.2}",
                     ":2:32: stages[0].prune.target.ffn: expected a fraction in [0, 1) or a whole count, got '-0.2'");
}

TEST(BadInput, RunDirectoryUnderAFileFailsEvenForRoot) {
  Scratch s;
  const std::string file = s.write("a-file", "not a directory\n");
  const auto r = run("run " + s.recipe("under-file", kLlama) + " --out " + file + "/run");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("cannot create directory " + file + ": a file is in the way\n"), std::string::npos) << r.output;
  EXPECT_EQ(fsys::read_file(file), "not a directory\n");
}

// chmod 555 binds everyone but root; as root the binary runs as `nobody` (setpriv), so the
// permission check is real either way.
TEST(BadInput, UnwritableRunDirectory) {
  std::string as_user;
  if (::geteuid() == 0) {
    if (::access("/usr/bin/setpriv", X_OK) != 0) GTEST_SKIP() << "root ignores permissions and there is no setpriv";
    as_user = "/usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups ";
  }
  Scratch s;
  ASSERT_EQ(::chmod(s.dir.c_str(), 0755), 0);  // mkdtemp makes it 0700
  const std::string locked = s.path("locked");
  fsys::create_directories(locked);
  ASSERT_EQ(::chmod(locked.c_str(), 0555), 0);
  const std::string recipe = s.recipe("locked", kLlama);
  const auto r = run("run " + recipe + " --out " + locked + "/run", as_user);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("cannot create directory " + locked + "/run: Permission denied\n"), std::string::npos) << r.output;
  EXPECT_TRUE(fsys::is_empty_directory(locked));
}

// A run whose disk fills up while exporting: a clear error, the report of what had finished is
// readable and names the failure, and no temp file is left behind. Needs a tiny tmpfs, so it runs
// where mount(2) is permitted (root with CAP_SYS_ADMIN) and is skipped elsewhere.
TEST(BadInput, DiskFullDuringExport) {
  Scratch s;
  const std::string disk = s.path("disk");
  fsys::create_directories(disk);
  if (::mount("tmpfs", disk.c_str(), "tmpfs", 0, "size=128k") != 0)
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)";
  struct Unmount {
    std::string dir;
    ~Unmount() { ::umount2(dir.c_str(), MNT_DETACH); }
  } unmount{disk};
  const std::string out = disk + "/run";
  const std::string recipe = s.recipe("full", kLlama, "[inspect: {}, export: {}]");  // the export needs ~760 KB
  const auto r = run("run " + recipe + " --out " + out + " --threads 1");
  EXPECT_EQ(r.code, 1) << r.output;
  const std::string message = out + "/export/model.safetensors: cannot write: No space left on device";
  EXPECT_NE(r.output.find(message + "\n"), std::string::npos) << r.output;
  EXPECT_TRUE(no_exception_dump(r.output)) << r.output;
  const auto report = nlohmann::json::parse(fsys::read_file(out + "/report.json"));
  EXPECT_EQ(report["error"], "[2/2] export: " + message);
  EXPECT_EQ(report["stages"][0]["kind"], "inspect");
  EXPECT_EQ(report["stages"][0]["results"]["params"], 189408);
  for (const auto& name : fsys::list_directory(out + "/export")) ADD_FAILURE() << "left behind: " << name;
}

// TorchScript runs code when loaded: secateur loads it only when the .pt is named, says so before
// loading, and a directory is always read as safetensors (docs/security.md).
TEST(BadInput, TorchScriptIsNamedAndWarnedAbout) {
  Scratch s;
  const std::string pt = kLlama + "/model.pt";
  auto r = run("inspect " + pt);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("note: " + pt + " is TorchScript, which can run code when loaded: load files from others as "
                          "safetensors.\n"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find(pt + ": loading a TorchScript file, which can execute code stored in it; load only files you "
                               "trust (safetensors is the safe default)\n"),
            std::string::npos)
      << r.output;
  // The fixture directory holds both: safetensors is what a directory means.
  r = run("inspect " + kLlama);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(r.output.find("TorchScript"), std::string::npos) << r.output;
  // A directory holding only TorchScript is refused, not loaded.
  const std::string only_pt = s.path("only-pt");
  fsys::create_directories(only_pt);
  s.write("only-pt/config.json", fsys::read_file(kLlama + "/config.json"));
  s.write("only-pt/model.pt", fsys::read_file(pt));
  expect_user_error(s, s.recipe("only-pt", only_pt),
                    only_pt + ": not a model directory: expected model.safetensors or model.safetensors.index.json (found: "
                              "config.json model.pt); for TorchScript pass the .pt file itself");
  r = run("help section model");
  EXPECT_NE(r.output.find("TorchScript runs code when loaded: prefer safetensors for files from others."), std::string::npos)
      << r.output;
}
