// Pruned models are packed as loaded ones are (issue #8): surgery builds its result with
// build_model + load_state, so each layer's q/k/v and gate/up keep one buffer and the pruned
// model's forward runs them as one GEMM, at whatever widths the masks left.
#include <gtest/gtest.h>

#include "model/functional.h"
#include "model/packing_test_util.h"
#include "surgery/surgery.h"
#include "surgery_test_util.h"

namespace secateur::surgery {
namespace {

class PackedSurgery : public ::testing::TestWithParam<std::string> {};

TEST_P(PackedSurgery, PrunedModelsArePacked) {
  torch::set_num_threads(2);
  const auto dense = model::load_model(testing::fixture(GetParam()));
  const Masks masks = testing::random_masks(dense->config(), 11, {true, true});
  const auto pruned = prune(*dense, masks);
  const auto groups = model::testing::packed_name_groups(*pruned);
  ASSERT_FALSE(groups.empty());
  for (const auto& names : groups)
    EXPECT_TRUE(model::fn::row_span(model::testing::parameters_named(*pruned, names)).defined()) << names[0];
}

INSTANTIATE_TEST_SUITE_P(Families, PackedSurgery, ::testing::Values("llama_gqa", "qwen2", "bert_cls", "roberta_cls"));

}  // namespace
}  // namespace secateur::surgery
