#pragma once
// Constructors of the built-in estimators, one per file; make_estimator() dispatches to them.
#include <memory>

#include "importance/estimator.h"

namespace secateur::importance {

std::unique_ptr<Estimator> make_magnitude(const EstimatorOptions& options);
std::unique_ptr<Estimator> make_head_gradient(const EstimatorOptions& options);
std::unique_ptr<Estimator> make_taylor(const EstimatorOptions& options);
std::unique_ptr<Estimator> make_activation(const EstimatorOptions& options);
std::unique_ptr<Estimator> make_fluctuation(const EstimatorOptions& options);
std::unique_ptr<Estimator> make_block_influence(const EstimatorOptions& options);
std::unique_ptr<Estimator> make_projection(const EstimatorOptions& options);
std::unique_ptr<Estimator> make_aggregated_activation(const EstimatorOptions& options);

}  // namespace secateur::importance
