#pragma once
// The common start of the learned-mask method tests: one HF fixture model per test parameter
// (a family name under tests/fixtures/models), loaded in eval mode after seeding torch with the
// suite's own seed, so each suite's random gates and batches stay as they were.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>
#include <string>

#include "model/model.h"

namespace secateur::testing_support {

inline std::string fixture_model_path(const std::string& name) {
  return std::string(SECATEUR_FIXTURES) + "/models/" + name;
}

template <int64_t Seed>
class FixtureModelTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    torch::set_num_threads(2);
    torch::manual_seed(Seed);
    model_ = model::load_model(fixture_model_path(GetParam()));
    model_->eval();
  }
  std::shared_ptr<model::Model> model_;
};

}  // namespace secateur::testing_support
