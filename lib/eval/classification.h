#pragma once
// Accuracy and macro-F1 of a classifier, accumulated over batches through a confusion matrix.
#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace secateur::eval {

class ClassificationMetrics {
 public:
  explicit ClassificationMetrics(int64_t num_classes);
  // logits [B, C]; labels [B] (entries of -100 are skipped).
  void add(const torch::Tensor& logits, const torch::Tensor& labels);
  // Under data parallelism, where each rank added its own batches: the confusion matrix of all
  // of them, on every rank (alone: nothing changes).
  void sum_over_ranks();

  int64_t examples() const;
  double accuracy() const;
  // Unweighted mean over classes of F1 = 2·P·R/(P+R); a class never predicted nor present
  // counts as F1 = 0 only if it appears in the labels (scikit-learn's "macro" over seen labels
  // and predictions).
  double macro_f1() const;
  const std::vector<std::vector<int64_t>>& confusion() const { return confusion_; }  // [true][predicted]

 private:
  std::vector<std::vector<int64_t>> confusion_;
};

}  // namespace secateur::eval
