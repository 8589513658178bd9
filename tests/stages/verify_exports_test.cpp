// Exports that transformers must load as-is (issue #6): a LLaMA with whole KV groups and a rounded
// FFN width removed, GPT-2 with its FFN halved, a BERT classifier with FFN neurons and a layer
// removed — every one uniform after pruning. Each export must load back in secateur and compute
// what the dense model computes through the masks; secateur's logits on fixed inputs go to
// logits.json, which tools/verify_export.py compares against transformers on the GPU machine
// (scripts/verify-exports.sh sets SECATEUR_VERIFY_OUT to keep the exports there).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

#include "model/model.h"
#include "recipe/recipe.h"
#include "run/runner.h"
#include "stages/builtin.h"
#include "surgery/masks.h"
#include "util/fs.h"

namespace secateur::stages {
namespace {

struct Case {
  std::string name, fixture, prune;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {"llama_kv_groups_ffn", "llama_gqa",
       "estimator: {name: magnitude}\n      target: {heads: 0.5, ffn: 0.25}\n      gqa: group\n      round_to: 8"},
      {"gpt2_ffn", "gpt2", "estimator: {name: magnitude}\n      target: {ffn: 0.5}\n      round_to: 8"},
      {"bert_ffn_layers", "bert_cls", "estimator: {name: magnitude}\n      target: {ffn: 0.5, layers: 1}"},
  };
  return all;
}

// Fixed inputs: two rows of 12 ids, the second right-padded by 4.
std::pair<torch::Tensor, torch::Tensor> inputs() {
  const torch::Tensor ids = (torch::arange(24, torch::kLong).reshape({2, 12}) * 7 + 3) % 120 + 3;
  torch::Tensor mask = torch::ones({2, 12}, torch::kLong);
  mask.index_put_({1, torch::indexing::Slice(8)}, 0);
  return {ids, mask};
}

nlohmann::json tensor_json(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kDouble).contiguous().reshape({-1});
  return {{"shape", t.sizes().vec()}, {"values", std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel())}};
}

TEST(VerifyExports, UniformPrunedExportsLoadBackAndMatchTheMaskedModel) {
  ASSERT_EQ(::chdir(SECATEUR_SOURCE_DIR), 0);
  torch::set_num_threads(2);
  const char* keep = std::getenv("SECATEUR_VERIFY_OUT");
  const std::string root = keep && *keep ? fs::absolute(keep)
                                         : fs::join(fs::temp_directory(), "secateur-verify-" + std::to_string(::getpid()));
  fs::create_directories(root);
  const auto [ids, mask] = inputs();
  nlohmann::json out = {{"format", "secateur.verify/1"}, {"input_ids", tensor_json(ids)}, {"attention_mask", tensor_json(mask)},
                        {"cases", nlohmann::json::array()}};
  for (const Case& c : cases()) {
    const std::string dir = fs::join(root, c.name), source = "tests/fixtures/models/" + c.fixture;
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::string recipe = fs::join(dir, "recipe.yaml");
    fs::write_atomic(recipe, "name: verify_" + c.name + "\nseed: 0\ndevice: cpu\nmodel: {path: " + source +
                                 "}\nstages:\n  - prune:\n      " + c.prune + "\n  - export: {}\n");
    run::RunOptions o;
    o.out = fs::join(dir, "run");
    run::execute(recipe::load_recipe(recipe, {}, *registry().recipe_schema()), registry(), o);
    const std::string exported = fs::join(o.out, "export");
    const auto pruned = model::load_model(exported);
    EXPECT_TRUE(pruned->config().is_uniform()) << c.name;  // transformers' own config can hold it
    const auto dense = model::load_model(source);
    const nlohmann::json pruning = nlohmann::json::parse(fs::read_file(fs::join(exported, "pruning.json")));
    const model::Gates gates = surgery::Masks::from_json(pruning["masks"], dense->config(), c.name).to_gates(dense->config());
    torch::NoGradGuard no_grad;
    const torch::Tensor a = dense->forward(ids, mask, &gates).logits, b = pruned->forward(ids, mask).logits;
    EXPECT_LE((a - b).abs().max().item<double>(), 1e-4) << c.name;
    EXPECT_LT(pruned->config().num_layers + pruned->config().layers[0].intermediate,
              dense->config().num_layers + dense->config().layers[0].intermediate) << c.name;
    out["cases"].push_back({{"name", c.name}, {"export", fs::absolute(exported)}, {"task", model::to_string(pruned->config().task)},
                            {"logits", tensor_json(b)}});
  }
  fs::write_atomic(fs::join(root, "logits.json"), out.dump() + "\n");
  if (!(keep && *keep)) fs::remove_all(root);
}

}  // namespace
}  // namespace secateur::stages
