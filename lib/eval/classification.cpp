#include "eval/classification.h"

#include "dist/dist.h"
#include "util/error.h"

namespace secateur::eval {

ClassificationMetrics::ClassificationMetrics(int64_t num_classes)
    : confusion_(static_cast<size_t>(num_classes), std::vector<int64_t>(static_cast<size_t>(num_classes), 0)) {}

void ClassificationMetrics::add(const torch::Tensor& logits, const torch::Tensor& labels) {
  auto predicted = logits.argmax(-1).to(torch::kCPU).to(torch::kLong).contiguous();
  auto truth = labels.to(torch::kCPU).to(torch::kLong).contiguous();
  const int64_t* p = predicted.data_ptr<int64_t>();
  const int64_t* t = truth.data_ptr<int64_t>();
  const auto classes = static_cast<int64_t>(confusion_.size());
  for (int64_t i = 0; i < truth.numel(); ++i) {
    if (t[i] == -100) continue;
    if (t[i] < 0 || t[i] >= classes)
      throw UserError("label " + std::to_string(t[i]) + " is outside the model's " + std::to_string(classes) + " classes");
    ++confusion_[static_cast<size_t>(t[i])][static_cast<size_t>(p[i])];
  }
}

void ClassificationMetrics::sum_over_ranks() {
  if (dist::world_size() == 1) return;
  const auto classes = static_cast<int64_t>(confusion_.size());
  torch::Tensor counts = torch::empty({classes, classes}, torch::kLong);
  auto cells = counts.accessor<int64_t, 2>();
  for (int64_t t = 0; t < classes; ++t)
    for (int64_t p = 0; p < classes; ++p) cells[t][p] = confusion_[static_cast<size_t>(t)][static_cast<size_t>(p)];
  dist::all_reduce_sum(counts);
  for (int64_t t = 0; t < classes; ++t)
    for (int64_t p = 0; p < classes; ++p) confusion_[static_cast<size_t>(t)][static_cast<size_t>(p)] = cells[t][p];
}

int64_t ClassificationMetrics::examples() const {
  int64_t n = 0;
  for (const auto& row : confusion_)
    for (int64_t c : row) n += c;
  return n;
}

double ClassificationMetrics::accuracy() const {
  int64_t correct = 0;
  for (size_t i = 0; i < confusion_.size(); ++i) correct += confusion_[i][i];
  int64_t n = examples();
  return n ? static_cast<double>(correct) / static_cast<double>(n) : 0.0;
}

double ClassificationMetrics::macro_f1() const {
  double total = 0;
  int classes_seen = 0;
  for (size_t c = 0; c < confusion_.size(); ++c) {
    int64_t tp = confusion_[c][c], actual = 0, predicted = 0;
    for (size_t k = 0; k < confusion_.size(); ++k) {
      actual += confusion_[c][k];
      predicted += confusion_[k][c];
    }
    if (actual == 0 && predicted == 0) continue;
    ++classes_seen;
    total += tp == 0 ? 0.0 : 2.0 * static_cast<double>(tp) / static_cast<double>(actual + predicted);
  }
  return classes_seen ? total / classes_seen : 0.0;
}

}  // namespace secateur::eval
