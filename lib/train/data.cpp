// Training data: the epoch sampler, batch sources over a DataSource, and the evaluator.
#include <algorithm>
#include <cmath>

#include "data/batching.h"
#include "data/dataset.h"
#include "dist/dist.h"
#include "eval/classification.h"
#include "eval/loss.h"
#include "train/trainer.h"
#include "util/error.h"

namespace secateur::train {

namespace {

// One 64-bit value from several, so that (seed, epoch, batch) streams never overlap.
uint64_t mix(uint64_t a, uint64_t b) {
  data::SplitMix64 g(a ^ (b * 0x9E3779B97F4A7C15ULL));
  g.next();
  return g.next();
}

}  // namespace

EpochSampler::EpochSampler(int64_t n, uint64_t seed, bool shuffle, int64_t rank, int64_t world_size)
    : n_(n), seed_(seed), shuffle_(shuffle), rank_(rank), world_size_(world_size) {
  if (world_size_ < 1 || rank_ < 0 || rank_ >= world_size_)
    throw UserError("sampler: rank " + std::to_string(rank_) + " outside world size " + std::to_string(world_size_));
}

int64_t EpochSampler::size() const { return n_ / world_size_; }

std::vector<int64_t> EpochSampler::order(int64_t epoch) const {
  std::vector<int64_t> all(static_cast<size_t>(n_));
  if (shuffle_) {
    const auto perm = data::seeded_permutation(static_cast<size_t>(n_), mix(seed_, static_cast<uint64_t>(epoch) + 1));
    for (size_t i = 0; i < perm.size(); ++i) all[i] = static_cast<int64_t>(perm[i]);
  } else {
    for (int64_t i = 0; i < n_; ++i) all[static_cast<size_t>(i)] = i;
  }
  std::vector<int64_t> mine;
  mine.reserve(static_cast<size_t>(size()));
  for (int64_t i = rank_; i < size() * world_size_; i += world_size_) mine.push_back(all[static_cast<size_t>(i)]);
  return mine;
}

namespace {

// Blocks of data.seq_len tokens from the training stream, [N, L], shuffled per epoch; masked LM
// masks each micro-batch with a seed from (seed, epoch, index).
class BlockSource : public BatchSource {
 public:
  BlockSource(const data::DataSource& d, const BatchSourceOptions& o) : data_(d), options_(o), sampler_(0, 0) {
    const int64_t L = d.config().seq_len;
    auto stream = d.stream(data::Split::train);
    int64_t n = stream.size(0) / L;
    if (o.max_examples > 0) n = std::min(n, o.max_examples);
    if (n < o.batch_size * o.world_size)
      throw UserError("train: the training split of " + d.dataset().name + " holds " + std::to_string(n) + " blocks of " +
                      std::to_string(L) + " tokens, fewer than one batch of " + std::to_string(o.batch_size));
    blocks_ = stream.narrow(0, 0, n * L).view({n, L}).contiguous();
    sampler_ = EpochSampler(n, o.seed, o.shuffle, o.rank, o.world_size);
    if (o.task == TrainTask::masked_lm) {
      masking_.probability = d.config().mlm_probability;
      masking_.mask_id = d.mask_id();
      masking_.vocab_size = d.tokenizer().vocab_size();
      masking_.special_ids = d.special_ids();
      if (masking_.mask_id < 0)
        throw UserError("data.tokenizer " + d.config().tokenizer + " has no mask token ([MASK] or <mask>): masked-LM training needs one");
    }
  }

  int64_t batches_per_epoch() const override { return sampler_.size() / options_.batch_size; }

  data::Batch batch(int64_t epoch, int64_t index) const override {
    if (epoch != cached_epoch_) {
      order_ = sampler_.order(epoch);
      cached_epoch_ = epoch;
    }
    const auto begin = order_.begin() + index * options_.batch_size;
    std::vector<int64_t> rows(begin, begin + options_.batch_size);
    data::Batch b;
    b.input_ids = blocks_.index_select(0, torch::tensor(rows, torch::kLong));
    b.attention_mask = torch::ones_like(b.input_ids);
    if (options_.task == TrainTask::masked_lm)
      b = data::mask_tokens(b, masking_, mix(mix(options_.seed, static_cast<uint64_t>(epoch)), static_cast<uint64_t>(index)));
    return b;
  }

  std::string describe() const override {
    return data_.dataset().name + " train split, " + std::to_string(blocks_.size(0)) + " blocks of " +
           std::to_string(blocks_.size(1)) + " tokens" + (options_.task == TrainTask::masked_lm ? ", masked" : "");
  }

 private:
  const data::DataSource& data_;
  BatchSourceOptions options_;
  EpochSampler sampler_;
  torch::Tensor blocks_;
  data::MaskingOptions masking_;
  mutable int64_t cached_epoch_ = -1;
  mutable std::vector<int64_t> order_;
};

// Labelled examples, shuffled per epoch and padded per micro-batch.
class ExampleSource : public BatchSource {
 public:
  ExampleSource(const data::DataSource& d, const BatchSourceOptions& o) : data_(d), options_(o), sampler_(0, 0) {
    // One unpadded batch per example (labelled_batches with batch size 1 truncates as configured).
    for (const auto& b : d.labelled_batches(data::Split::train, 1, o.max_examples)) {
      data::Sequence s;
      auto ids = b.input_ids[0].to(torch::kInt);
      s.ids.assign(ids.data_ptr<int32_t>(), ids.data_ptr<int32_t>() + ids.numel());
      if (b.token_type_ids.defined()) {
        auto t = b.token_type_ids[0].to(torch::kInt);
        s.type_ids.assign(t.data_ptr<int32_t>(), t.data_ptr<int32_t>() + t.numel());
      }
      s.label = b.labels[0].item<int64_t>();
      examples_.push_back(std::move(s));
    }
    const auto n = static_cast<int64_t>(examples_.size());
    if (n < o.batch_size * o.world_size)
      throw UserError("train: the training split of " + d.dataset().name + " holds " + std::to_string(n) +
                      " examples, fewer than one batch of " + std::to_string(o.batch_size));
    sampler_ = EpochSampler(n, o.seed, o.shuffle, o.rank, o.world_size);
  }

  int64_t batches_per_epoch() const override { return sampler_.size() / options_.batch_size; }

  data::Batch batch(int64_t epoch, int64_t index) const override {
    if (epoch != cached_epoch_) {
      order_ = sampler_.order(epoch);
      cached_epoch_ = epoch;
    }
    std::vector<data::Sequence> seqs;
    for (int64_t k = 0; k < options_.batch_size; ++k)
      seqs.push_back(examples_[static_cast<size_t>(order_[static_cast<size_t>(index * options_.batch_size + k)])]);
    return data::pad_sequences(seqs, data_.pad_id());
  }

  std::string describe() const override {
    return data_.dataset().name + " train split, " + std::to_string(examples_.size()) + " labelled examples";
  }

 private:
  const data::DataSource& data_;
  BatchSourceOptions options_;
  EpochSampler sampler_;
  std::vector<data::Sequence> examples_;
  mutable int64_t cached_epoch_ = -1;
  mutable std::vector<int64_t> order_;
};

model::Task model_task(TrainTask t) {
  switch (t) {
    case TrainTask::causal_lm: return model::Task::causal_lm;
    case TrainTask::masked_lm: return model::Task::masked_lm;
    case TrainTask::classification: return model::Task::sequence_classification;
  }
  return model::Task::base;
}

// Validation metrics through the same gates and forward options as training uses.
class DataEvaluator : public Evaluator {
 public:
  DataEvaluator(const data::DataSource& d, TrainTask task, const EvalOptions& o) : task_(task) {
    if (task == TrainTask::classification) {
      batches_ = d.labelled_batches(o.split, o.batch_size);
    } else if (task == TrainTask::masked_lm) {
      batches_ = d.masked_blocks(o.split, o.batch_size, o.seed);
    } else {
      batches_ = d.blocks(o.split, o.batch_size);
    }
    if (o.max_batches > 0 && static_cast<int64_t>(batches_.size()) > o.max_batches) batches_.resize(static_cast<size_t>(o.max_batches));
  }

  StepMetrics evaluate(model::Model& m, const model::Gates* gates, const model::ForwardOptions& options) override {
    torch::NoGradGuard no_grad;
    const bool was_training = m.is_training();
    m.eval();
    const auto device = m.device();
    torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device));
    torch::Tensor count = torch::zeros({}, torch::TensorOptions().dtype(torch::kLong).device(device));
    torch::Tensor correct = torch::zeros({}, torch::TensorOptions().dtype(torch::kLong).device(device));
    std::unique_ptr<eval::ClassificationMetrics> cls;
    if (task_ == TrainTask::classification) cls = std::make_unique<eval::ClassificationMetrics>(m.config().num_labels);
    // Under data parallelism each rank evaluates its share of the split; the sums add up over ranks.
    for (const auto& batch : dist::owned(batches_)) {
      const data::Batch b = batch.to(device);
      model::ForwardOptions f = options;
      f.output_hidden_states = false;
      f.token_type_ids = b.token_type_ids;
      const auto logits = m.forward(b.input_ids, b.attention_mask, gates, f).logits;
      const auto s = eval::task_loss_sum(model_task(task_), logits, b);
      loss_sum += s.sum.to(torch::kDouble);
      count += s.count;
      if (cls) cls->add(logits.to(torch::kFloat).cpu(), b.labels.cpu());
      if (task_ == TrainTask::masked_lm) correct += (logits.argmax(-1).eq(b.labels) & (b.labels != -100)).sum();
    }
    if (was_training) m.train();
    std::vector<torch::Tensor> sums{loss_sum, count, correct};
    dist::all_reduce_sum(sums);
    if (cls) cls->sum_over_ranks();
    const double n = static_cast<double>(std::max<int64_t>(1, count.item<int64_t>()));
    const double loss = loss_sum.item<double>() / n;
    StepMetrics out{{"loss", loss}};
    if (task_ != TrainTask::classification) out["perplexity"] = std::exp(loss);
    if (task_ == TrainTask::masked_lm) out["accuracy"] = static_cast<double>(correct.item<int64_t>()) / n;
    if (cls) {
      out["accuracy"] = cls->accuracy();
      out["macro_f1"] = cls->macro_f1();
    }
    return out;
  }

 private:
  TrainTask task_;
  std::vector<data::Batch> batches_;
};

}  // namespace

std::shared_ptr<BatchSource> make_batch_source(const data::DataSource& data, const BatchSourceOptions& options) {
  if (options.batch_size < 1) throw UserError("train: batch_size must be at least 1");
  if (options.task == TrainTask::classification) return std::make_shared<ExampleSource>(data, options);
  return std::make_shared<BlockSource>(data, options);
}

std::shared_ptr<Evaluator> make_evaluator(const data::DataSource& data, TrainTask task, const EvalOptions& options) {
  return std::make_shared<DataEvaluator>(data, task, options);
}

}  // namespace secateur::train
