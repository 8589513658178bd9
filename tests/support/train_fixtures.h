#pragma once
// What the training tests train: a fixture model from tests/fixtures/models, and fixed random
// blocks of token ids to train it on, dealt out per epoch (and per data-parallel rank) by
// train::EpochSampler as make_batch_source deals a DataSource's blocks.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "model/model.h"
#include "train/trainer.h"

namespace secateur::testing {

inline std::shared_ptr<model::Model> fixture_model(const std::string& name) {
  return model::load_model(std::string(SECATEUR_FIXTURES) + "/models/" + name);
}

// n blocks of `len` token ids below `vocab` (no padding), the same for every seed and rank:
// example i is row i. Rank `rank` of `world` gets its share of each epoch's order.
class RandomBlocks : public train::BatchSource {
 public:
  RandomBlocks(int64_t n, int64_t len, int64_t vocab, int64_t batch_size, uint64_t seed = 0, bool shuffle = true,
               int64_t rank = 0, int64_t world = 1)
      : batch_size_(batch_size), sampler_(n, seed, shuffle, rank, world) {
    auto g = torch::make_generator<at::CPUGeneratorImpl>(1234);
    rows_ = torch::randint(vocab, {n, len}, g, torch::kLong);
  }
  int64_t batches_per_epoch() const override { return sampler_.size() / batch_size_; }
  data::Batch batch(int64_t epoch, int64_t index) const override {
    const auto order = sampler_.order(epoch);
    std::vector<int64_t> idx(order.begin() + index * batch_size_, order.begin() + (index + 1) * batch_size_);
    data::Batch b;
    b.input_ids = rows_.index_select(0, torch::tensor(idx, torch::kLong));
    b.attention_mask = torch::ones_like(b.input_ids);
    return b;
  }
  std::string describe() const override { return "random blocks"; }

 private:
  int64_t batch_size_;
  train::EpochSampler sampler_;
  torch::Tensor rows_;
};

}  // namespace secateur::testing
