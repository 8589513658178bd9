// The evaluation options shared by the eval stage and prune.schedule.iterative.eval: defaults,
// the values a recipe gives, and errors that name the key.
#include <gtest/gtest.h>

#include "recipe/schema.h"
#include "recipe/value.h"
#include "stages/eval_metrics.h"

namespace secateur::stages {
namespace {

recipe::Value validated(const std::string& yaml, std::vector<std::string>* errors = nullptr) {
  recipe::Diagnostics d;
  const recipe::Value v = task_eval_schema()->validate(recipe::parse_yaml(yaml, "r.yaml"), "eval", d);
  if (errors)
    for (const auto& e : d.items()) errors->push_back(e.str());
  return v;
}

TEST(TaskEvalOptions, DefaultsGraphTheirPasses) {
  const TaskEvalOptions o = task_eval_options(validated("{}"));
  EXPECT_TRUE(o.cuda_graph);
  EXPECT_EQ(o.split, data::Split::validation);
  EXPECT_EQ(o.batch_size, 0);
}

TEST(TaskEvalOptions, CudaGraphCanBeTurnedOff) {
  const TaskEvalOptions o = task_eval_options(validated("{split: test, cuda_graph: false, max_examples: 32}"));
  EXPECT_FALSE(o.cuda_graph);
  EXPECT_EQ(o.split, data::Split::test);
  EXPECT_EQ(o.max_examples, 32);
}

TEST(TaskEvalOptions, NonBooleanCudaGraphNamesTheKey) {
  std::vector<std::string> errors;
  validated("{cuda_graph: sometimes}", &errors);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("cuda_graph"), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("r.yaml:1"), std::string::npos) << errors[0];
}

}  // namespace
}  // namespace secateur::stages
