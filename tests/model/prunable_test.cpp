// The prunable view: group counts, parameter and FLOP bookkeeping, and, most of all, that
// deleting a group's slices (what surgery does) gives the model its zero gate describes.
#include <gtest/gtest.h>

#include "model/model.h"
#include "model/prunable.h"
#include "model_test_util.h"

namespace secateur::model {
namespace {

using testing::fixture;
using testing::max_diff;

int64_t sum_params(const PrunableStructure& s, GroupKind kind) {
  int64_t n = 0;
  for (const Group* g : s.of_kind(kind)) n += g->params;
  return n;
}

int64_t sum_flops(const PrunableStructure& s, GroupKind kind) {
  int64_t n = 0;
  for (const Group* g : s.of_kind(kind)) n += g->flops_per_token;
  return n;
}

const Group* find(const PrunableStructure& s, GroupKind kind, int64_t layer, int64_t index) {
  for (const Group& g : s.groups)
    if (g.kind == kind && g.layer == layer && g.index == index) return &g;
  return nullptr;
}

TEST(Prunable, GroupCountsFollowTheConfig) {
  const auto llama = load_model(fixture("llama_gqa"));  // 2 layers, 6 heads, 2 kv, ffn 200, hidden 96
  const PrunableStructure s = prunable_structure(*llama);
  EXPECT_EQ(s.count(GroupKind::head), 12u);
  EXPECT_EQ(s.count(GroupKind::kv_group), 4u);
  EXPECT_EQ(s.count(GroupKind::ffn_neuron), 400u);
  EXPECT_EQ(s.count(GroupKind::hidden_dim), 96u);
  EXPECT_EQ(s.count(GroupKind::attn_block), 2u);
  EXPECT_EQ(s.count(GroupKind::mlp_block), 2u);
  EXPECT_EQ(s.count(GroupKind::layer), 2u);

  const auto bert = load_model(fixture("bert_cls"));  // 2 layers, 4 heads, ffn 128, hidden 64, no GQA
  const PrunableStructure b = prunable_structure(*bert, {128, false});
  EXPECT_EQ(b.count(GroupKind::head), 8u);
  EXPECT_EQ(b.count(GroupKind::kv_group), 0u);
  EXPECT_EQ(b.count(GroupKind::ffn_neuron), 256u);
  EXPECT_EQ(b.count(GroupKind::hidden_dim), 0u);
}

TEST(Prunable, LlamaHeadsAndNeuronsPlusTheRestMakeTheTotal) {
  const auto model = load_model(fixture("llama_gqa"));
  const ModelConfig& c = model->config();
  const PrunableStructure s = prunable_structure(*model);
  const int64_t H = 96, V = 128, hd = 16, kv = 2;
  // Neither head nor neuron: embeddings, untied LM head, final norm, and per layer the k/v
  // projections (owned by kv groups) and the two norms.
  const int64_t rest = 2 * V * H + H + c.num_layers * (2 * kv * hd * H + 2 * H);
  EXPECT_EQ(sum_params(s, GroupKind::head) + sum_params(s, GroupKind::ffn_neuron) + rest, parameter_count(*model).total);
  EXPECT_EQ(sum_params(s, GroupKind::kv_group), c.num_layers * 2 * kv * hd * H);
  // Every Llama tensor has exactly one hidden-sized dim, so the hidden dims partition the model.
  EXPECT_EQ(sum_params(s, GroupKind::hidden_dim), parameter_count(*model).total);
  EXPECT_EQ(parameter_count(*model).non_embedding, parameter_count(*model).total - V * H);
}

TEST(Prunable, BertHeadsAndNeuronsPlusTheRestMakeTheTotal) {
  const auto model = load_model(fixture("bert_cls"));
  const PrunableStructure s = prunable_structure(*model);
  const int64_t H = 64, V = 128, P = 32, types = 2, labels = 3, layers = 2;
  const int64_t embeddings = (V + P + types) * H + 2 * H;
  // Per layer: output dense bias, two LayerNorms, FFN output bias.
  const int64_t per_layer = H + 2 * H + H + 2 * H;
  const int64_t heads_rest = H * H + H + labels * H + labels;  // pooler, classifier
  EXPECT_EQ(sum_params(s, GroupKind::head) + sum_params(s, GroupKind::ffn_neuron) + embeddings + layers * per_layer +
                heads_rest,
            parameter_count(*model).total);
  EXPECT_EQ(parameter_count(*model).non_embedding, parameter_count(*model).total - (V + P + types) * H);
}

TEST(Prunable, KvGroupOwnsItsKeyAndValueRows) {
  const auto model = load_model(fixture("qwen2"));  // q/k/v biases; 4 heads, 2 kv, head_dim 16
  const PrunableStructure s = prunable_structure(*model, {64, false});
  const Group* g = find(s, GroupKind::kv_group, 1, 1);
  ASSERT_NE(g, nullptr);
  std::set<std::string> names;
  for (const ParamSlice& slice : g->slices) {
    EXPECT_EQ(slice.dim, 0);
    EXPECT_EQ(slice.start, 16);
    EXPECT_EQ(slice.length, 16);
    names.insert(slice.hf_param_name);
  }
  const std::string p = "model.layers.1.self_attn.";
  EXPECT_EQ(names, (std::set<std::string>{p + "k_proj.weight", p + "k_proj.bias", p + "v_proj.weight", p + "v_proj.bias"}));
  EXPECT_EQ(g->params, 2 * 16 * 64 + 2 * 16);
}

TEST(Prunable, Gpt2HeadSlicesTheFusedConv1D) {
  const auto model = load_model(fixture("gpt2"));  // hidden 64, 4 heads of 16
  const PrunableStructure structure = prunable_structure(*model, {32, false});
  const Group* g = find(structure, GroupKind::head, 0, 1);
  ASSERT_NE(g, nullptr);
  std::vector<std::tuple<std::string, int64_t, int64_t>> got;
  for (const ParamSlice& s : g->slices) got.emplace_back(s.hf_param_name, s.dim, s.start);
  const std::string p = "transformer.h.0.attn.";
  const std::vector<std::tuple<std::string, int64_t, int64_t>> want{
      {p + "c_attn.weight", 1, 16}, {p + "c_attn.bias", 0, 16},  {p + "c_attn.weight", 1, 80},
      {p + "c_attn.bias", 0, 80},   {p + "c_attn.weight", 1, 144}, {p + "c_attn.bias", 0, 144},
      {p + "c_proj.weight", 0, 16}};
  EXPECT_EQ(got, want);
}

TEST(Prunable, GroupFlopsAddUpToTheAnalyticCount) {
  for (const std::string name : {"llama_gqa", "gpt2", "bert_mlm"}) {
    const auto model = load_model(fixture(name));
    const ModelConfig& c = model->config();
    const PrunableStructure s = prunable_structure(*model, {12, false});
    const int64_t head = c.task == Task::masked_lm ? 2 * c.hidden_size * c.hidden_size : 0;
    EXPECT_EQ(sum_flops(s, GroupKind::head) + sum_flops(s, GroupKind::kv_group) + sum_flops(s, GroupKind::ffn_neuron) +
                  2 * c.hidden_size * c.vocab_size + head,
              flops_per_token(c, 12))
        << name;
    int64_t blocks = 0;
    for (const Group* g : s.of_kind(GroupKind::layer)) blocks += g->flops_per_token;
    EXPECT_EQ(blocks, sum_flops(s, GroupKind::attn_block) + sum_flops(s, GroupKind::mlp_block)) << name;
  }
}

TEST(Prunable, FlopsFollowHeterogeneousShapes) {
  ModelConfig c = load_model(fixture("llama_gqa"))->config();
  const int64_t before = flops_per_token(c, 16);
  c.layers[0].has_mlp = false;
  EXPECT_EQ(before - flops_per_token(c, 16), 2 * 96 * 200 * 3);
  c.layers[1].num_heads = 3;
  c.layers[1].num_kv_heads = 1;
  // One group of 3 heads gone: q/o rows and columns, k/v rows, and 3 heads' attention over 16 tokens.
  EXPECT_EQ(before - 2 * 96 * 200 * 3 - flops_per_token(c, 16), 2 * 96 * 48 * 2 + 2 * 96 * 16 * 2 + 3 * 2 * 16 * 17);
}

// Removing groups through their slices must give the model the zero gates describe.
struct SurgeryCase {
  std::string name;
  GroupKind kind;
  std::vector<int64_t> indices;  // within layer 1 (or hidden dims)
};

class SurgeryTest : public ::testing::TestWithParam<SurgeryCase> {};

TEST_P(SurgeryTest, RemovingSlicesEqualsZeroGates) {
  torch::set_num_threads(2);
  const SurgeryCase& sc = GetParam();
  const auto model = load_model(fixture(sc.name));
  const ModelConfig& c = model->config();
  const PrunableStructure s = prunable_structure(*model);
  const int64_t l = sc.kind == GroupKind::hidden_dim ? -1 : 1;
  const int64_t group_size = c.layers[1].num_heads / c.layers[1].num_kv_heads;

  Gates gates = Gates::ones(c);
  ModelConfig pruned = c;
  std::vector<const Group*> doomed;
  for (int64_t i : sc.indices) {
    doomed.push_back(find(s, sc.kind, l, i));
    ASSERT_NE(doomed.back(), nullptr);
    switch (sc.kind) {
      case GroupKind::head: gates.head[1][i] = 0.0; --pruned.layers[1].num_heads; --pruned.layers[1].num_kv_heads; break;
      case GroupKind::kv_group:  // the group and every query head reading it
        gates.kv_group[1][i] = 0.0;
        for (int64_t h = i * group_size; h < (i + 1) * group_size; ++h) doomed.push_back(find(s, GroupKind::head, 1, h));
        pruned.layers[1].num_heads -= group_size;
        --pruned.layers[1].num_kv_heads;
        break;
      case GroupKind::ffn_neuron: gates.ffn[1][i] = 0.0; --pruned.layers[1].intermediate; break;
      case GroupKind::hidden_dim: gates.hidden[i] = 0.0; --pruned.hidden_size; break;
      case GroupKind::attn_block: gates.attn_block[1] = torch::zeros({}); pruned.layers[1].has_attention = false; break;
      case GroupKind::mlp_block: gates.mlp_block[1] = torch::zeros({}); pruned.layers[1].has_mlp = false; break;
      case GroupKind::layer:
        gates.layer[1] = torch::zeros({});
        pruned.layers[1].has_attention = pruned.layers[1].has_mlp = false;
        break;
    }
  }
  const auto smaller = build_model(pruned);
  const LoadReport report = smaller->load_state(testing::remove_groups(model->state_dict_hf(), doomed));
  EXPECT_TRUE(report.missing.empty()) << report.missing.front();
  EXPECT_TRUE(report.unexpected.empty()) << report.unexpected.front();
  smaller->eval();

  const testing::Reference ref = testing::load_reference(sc.name);
  torch::NoGradGuard no_grad;
  const torch::Tensor gated = model->forward(ref.input_ids, ref.attention_mask, &gates).logits;
  const torch::Tensor removed = smaller->forward(ref.input_ids, ref.attention_mask).logits;
  EXPECT_LE(max_diff(gated, removed), 2e-5);
  EXPECT_GT(max_diff(gated, model->forward(ref.input_ids, ref.attention_mask).logits), 1e-4);
}

std::vector<SurgeryCase> surgery_cases() {
  std::vector<SurgeryCase> cases;
  for (const std::string name : {"llama_gqa", "qwen2", "gpt2", "bert_cls", "bert_mlm", "roberta_cls"}) {
    const bool gqa = name == "llama_gqa" || name == "qwen2";
    if (gqa) cases.push_back({name, GroupKind::kv_group, {1}});
    else cases.push_back({name, GroupKind::head, {0, 3}});
    cases.push_back({name, GroupKind::ffn_neuron, {0, 5, 17}});
    cases.push_back({name, GroupKind::hidden_dim, {2, 30, 63}});
    cases.push_back({name, GroupKind::attn_block, {0}});
    cases.push_back({name, GroupKind::mlp_block, {0}});
    cases.push_back({name, GroupKind::layer, {0}});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Families, SurgeryTest, ::testing::ValuesIn(surgery_cases()), [](const auto& info) {
  return info.param.name + "_" + to_string(info.param.kind);
});

}  // namespace
}  // namespace secateur::model
