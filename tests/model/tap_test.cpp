// Activation taps see every projection's input (with the dim of its weight that x's last dim
// indexes) and every block's output, in every family.
#include <gtest/gtest.h>

#include "model/model.h"
#include "model/tap.h"
#include "model_test_util.h"

namespace secateur::model {
namespace {

struct Recorder : Tap {
  int64_t projections = 0;
  int64_t mismatched = 0;
  std::vector<std::pair<int64_t, bool>> blocks;
  torch::Tensor last_block;
  void projection_input(const torch::Tensor& weight, int64_t in_dim, const torch::Tensor& x) override {
    ++projections;
    if (x.size(-1) != weight.size(in_dim)) ++mismatched;
  }
  void block_output(int64_t layer, bool attention, const torch::Tensor& x) override {
    blocks.emplace_back(layer, attention);
    last_block = x;
  }
};

TEST(Tap, SeesEveryProjectionAndBlock) {
  torch::set_num_threads(2);
  // Projections per layer, plus the head's: llama q k v o gate up down + lm_head; gpt2 c_attn
  // c_proj c_fc c_proj + tied head; bert q k v o up down + pooler and classifier.
  for (const auto& [name, per_layer, head] :
       {std::tuple<std::string, int64_t, int64_t>{"llama_gqa", 7, 1}, {"gpt2", 4, 1}, {"bert_cls", 6, 2}}) {
    const auto model = load_model(testing::fixture(name));
    const testing::Reference ref = testing::load_reference(name);
    Recorder recorder;
    torch::NoGradGuard no_grad;
    {
      TapScope scope(&recorder);
      model->forward(ref.input_ids, ref.attention_mask);
    }
    EXPECT_EQ(recorder.projections, 2 * per_layer + head) << name;
    EXPECT_EQ(recorder.mismatched, 0) << name;
    EXPECT_EQ(recorder.blocks, (std::vector<std::pair<int64_t, bool>>{{0, true}, {0, false}, {1, true}, {1, false}}))
        << name;
    if (name == "bert_cls") {  // post-LN: the last block's output is the last hidden state
      EXPECT_TRUE(recorder.last_block.equal(model->forward(ref.input_ids, ref.attention_mask).last_hidden));
    }
    const int64_t seen = recorder.projections;
    model->forward(ref.input_ids, ref.attention_mask);  // scope closed: nothing more is seen
    EXPECT_EQ(recorder.projections, seen);
    EXPECT_EQ(current_tap(), nullptr);
  }
}

}  // namespace
}  // namespace secateur::model
