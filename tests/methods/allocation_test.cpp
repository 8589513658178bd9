// Allocation meets its targets exactly after rounding, keeps GQA groups consistent, honours
// minimums, ranks globally by score, and picks Gromov et al.'s run of layers.
#include <gtest/gtest.h>

#include <algorithm>

#include "methods/allocation.h"
#include "util/error.h"

namespace secateur::methods {
namespace {

using model::GroupKind;

std::shared_ptr<model::Model> load(const std::string& name) {
  return model::load_model(std::string(SECATEUR_FIXTURES) + "/models/" + name);
}

// Random scores for every group of the structure (seeded), layer runs excluded.
importance::Scores random_scores(const model::PrunableStructure& s, uint64_t seed) {
  torch::manual_seed(seed);
  std::map<std::pair<GroupKind, int64_t>, int64_t> sizes;
  for (const model::Group& g : s.groups) {
    auto& n = sizes[{g.kind, g.layer}];
    n = std::max(n, g.index + 1);
  }
  importance::Scores scores;
  for (const auto& [key, n] : sizes) scores.set(key.first, key.second, torch::rand({n}, torch::kDouble));
  return scores;
}

struct Fixture {
  explicit Fixture(const std::string& name) : model(load(name)), structure(model::prunable_structure(*model)), scores(random_scores(structure, 3)) {}
  Allocation run(const Targets& t, const AllocationOptions& o, const surgery::Masks* current = nullptr) const {
    return allocate(*model, structure, scores, t, o, current ? *current : surgery::Masks::keep_all(model->config()));
  }
  std::shared_ptr<model::Model> model;
  model::PrunableStructure structure;
  importance::Scores scores;
};

Targets target(TargetKind k, double fraction, int64_t count = -1) {
  Targets t;
  t.per_kind[k] = {fraction, count};
  return t;
}

TEST(Allocation, UniformGroupHeadsKeepHalfOfEveryLayer) {
  const Fixture f("llama_gqa");  // 6 heads in 2 groups per layer
  const Allocation a = f.run(target(TargetKind::heads, 0.5), {});
  ASSERT_TRUE(a.met) << a.unmet;
  EXPECT_EQ(a.kinds.at(TargetKind::heads).requested, 6);
  EXPECT_EQ(a.kinds.at(TargetKind::heads).removed, 6);
  for (const surgery::LayerMask& l : a.masks.layers) {
    EXPECT_EQ(l.heads.size(), 3u);
    EXPECT_EQ(l.kv_groups.size(), 1u);
  }
  a.masks.validate(f.model->config());
  // The group each layer dropped is its lower-scored one.
  for (int64_t l = 0; l < 2; ++l) {
    const torch::Tensor s = f.scores.of(GroupKind::kv_group, l);
    EXPECT_EQ(a.masks.layers[l].kv_groups[0], s.argmax().item<int64_t>());
  }
}

TEST(Allocation, GlobalRemovesExactlyTheLowestScoredNeurons) {
  const Fixture f("llama_gqa");
  AllocationOptions o;
  o.mode = Mode::global;
  const Allocation a = f.run(target(TargetKind::ffn, 0.0, 137), o);
  ASSERT_TRUE(a.met);
  EXPECT_EQ(a.kinds.at(TargetKind::ffn).removed, 137);
  double max_removed = -1, min_kept = 2;
  for (int64_t l = 0; l < 2; ++l) {
    const torch::Tensor s = f.scores.of(GroupKind::ffn_neuron, l);
    const auto& kept = a.masks.layers[l].ffn;
    for (int64_t i = 0; i < s.numel(); ++i) {
      const bool k = std::binary_search(kept.begin(), kept.end(), i);
      (k ? min_kept : max_removed) = k ? std::min(min_kept, s[i].item<double>()) : std::max(max_removed, s[i].item<double>());
    }
  }
  EXPECT_LT(max_removed, min_kept);
  EXPECT_EQ(a.steps.size(), 137u);
  EXPECT_TRUE(std::is_sorted(a.steps.begin(), a.steps.end(), [](const Step& x, const Step& y) { return x.score < y.score; }));
}

TEST(Allocation, RoundingKeepsWidthsOnMultiplesAndMeetsTheRoundedTarget) {
  const Fixture f("llama_gqa");  // 200 neurons per layer
  AllocationOptions o;
  o.round_to[TargetKind::ffn] = 8;
  // Uniform: each layer wants 140 of 200; 136 and 144 tie, and ties keep more: 144.
  const Allocation u = f.run(target(TargetKind::ffn, 0.3), o);
  EXPECT_TRUE(u.met);
  EXPECT_EQ(u.kinds.at(TargetKind::ffn).requested, 120);
  EXPECT_EQ(u.kinds.at(TargetKind::ffn).target, 112);
  EXPECT_EQ(u.kinds.at(TargetKind::ffn).removed, 112);
  for (const auto& l : u.masks.layers) EXPECT_EQ(l.ffn.size(), 144u);
  // Global: any multiple of 8 is reachable, so the request itself (120) is met exactly.
  o.mode = Mode::global;
  const Allocation g = f.run(target(TargetKind::ffn, 0.3), o);
  EXPECT_TRUE(g.met) << g.unmet;
  EXPECT_EQ(g.kinds.at(TargetKind::ffn).removed, 120);
  for (const auto& l : g.masks.layers) EXPECT_EQ(l.ffn.size() % 8, 0u);
  // 125 is not reachable: rounded to the nearest multiple of 8 (128).
  const Allocation r = f.run(target(TargetKind::ffn, 0, 125), o);
  EXPECT_TRUE(r.met);
  EXPECT_EQ(r.kinds.at(TargetKind::ffn).target, 128);
  EXPECT_EQ(r.kinds.at(TargetKind::ffn).removed, 128);
}

TEST(Allocation, WithinGroupsEveryGroupKeepsTheSameNumberOfQueryHeads) {
  const Fixture f("llama_gqa");
  AllocationOptions o;
  o.mode = Mode::global;
  o.gqa = GqaMode::within;
  const Allocation a = f.run(target(TargetKind::heads, 0, 6), o);
  ASSERT_TRUE(a.met);
  EXPECT_EQ(a.kinds.at(TargetKind::heads).removed, 6);
  a.masks.validate(f.model->config());  // equal heads per kept group, or it throws
  for (const auto& l : a.masks.layers) {
    EXPECT_EQ(l.kv_groups.size(), 2u);  // no group goes
    EXPECT_EQ(l.heads.size() % 2, 0u);
  }
  // 5 heads cannot be removed two at a time: 4 and 6 are equally near, and ties keep more.
  const Allocation odd = f.run(target(TargetKind::heads, 0, 5), o);
  EXPECT_EQ(odd.kinds.at(TargetKind::heads).target, 4);
  EXPECT_EQ(odd.kinds.at(TargetKind::heads).removed, 4);
}

TEST(Allocation, MinimumPerLayerIsHonoured) {
  const Fixture f("gpt2");  // 128 neurons, 4 heads per layer
  AllocationOptions o;
  o.mode = Mode::global;
  o.min_per_layer[TargetKind::ffn] = 100;
  o.min_per_layer[TargetKind::heads] = 3;
  Targets t = target(TargetKind::ffn, 0.9);
  t.per_kind[TargetKind::heads] = {0.9, -1};
  const Allocation a = f.run(t, o);
  for (const auto& l : a.masks.layers) {
    EXPECT_EQ(l.ffn.size(), 100u);
    EXPECT_EQ(l.heads.size(), 3u);
    EXPECT_EQ(l.kv_groups, l.heads);
  }
  EXPECT_EQ(a.kinds.at(TargetKind::ffn).target, 56);  // the most the minimum allows
  EXPECT_TRUE(a.met);
}

TEST(Allocation, ParamsTargetStopsWithinOneUnitOfTheBudget) {
  const Fixture f("llama_gqa");
  AllocationOptions o;
  o.mode = Mode::adaptive;
  Targets t;
  t.params = 0.2;
  const Allocation a = f.run(t, o);
  EXPECT_EQ(a.params_target, std::llround(0.2 * static_cast<double>(a.params_base)));
  EXPECT_LE(a.params_removed, a.params_target);
  int64_t largest = 0;
  for (const Step& s : a.steps) largest = std::max(largest, s.params);
  EXPECT_GT(a.params_removed, a.params_target - largest);
  bool heads = false, neurons = false;
  for (const Step& s : a.steps) (s.kind == TargetKind::heads ? heads : neurons) = true;
  EXPECT_TRUE(neurons);
  a.masks.validate(f.model->config());
  EXPECT_EQ(removed_params(f.structure, a.masks), a.params_removed);
  (void)heads;
}

TEST(Allocation, LayerRunWithTheSmallestAngularDistanceIsDropped) {
  Fixture f("llama_gqa");
  f.scores.layer_runs = {0.4, 0.1};  // runs of 1 starting at layer 0 and 1
  f.scores.run_length = 1;
  const Allocation a = f.run(target(TargetKind::layers, 0, 1), {});
  EXPECT_TRUE(a.masks.layers[0].keep);
  EXPECT_FALSE(a.masks.layers[1].keep);
  // Without runs, layers go by their own (lowest) score.
  f.scores.layer_runs.clear();
  f.scores.run_length = 0;
  f.scores.set(GroupKind::layer, 0, torch::tensor({0.05}, torch::kDouble));
  f.scores.set(GroupKind::layer, 1, torch::tensor({0.5}, torch::kDouble));
  const Allocation b = f.run(target(TargetKind::layers, 0.5), {});
  EXPECT_FALSE(b.masks.layers[0].keep);
  EXPECT_TRUE(b.masks.layers[1].keep);
  EXPECT_EQ(b.kinds.at(TargetKind::layers).removed, 1);
}

TEST(Allocation, CumulativeRoundsContinueFromTheCurrentMasks) {
  const Fixture f("llama_gqa");
  AllocationOptions o;
  o.mode = Mode::global;
  const Allocation first = f.run(target(TargetKind::ffn, 0.25), o);
  EXPECT_EQ(first.kinds.at(TargetKind::ffn).removed, 100);
  const Allocation second = f.run(target(TargetKind::ffn, 0.5), o, &first.masks);
  EXPECT_EQ(second.kinds.at(TargetKind::ffn).removed, 200);
  EXPECT_EQ(second.steps.size(), 100u);  // only this round's removals
  for (int64_t l = 0; l < 2; ++l)
    for (int64_t i : second.masks.layers[l].ffn)
      EXPECT_TRUE(std::binary_search(first.masks.layers[l].ffn.begin(), first.masks.layers[l].ffn.end(), i));
}

TEST(Allocation, MissingScoresAndConflictingTargetsAreUserErrors) {
  Fixture f("llama_gqa");
  f.scores.per_layer.erase(GroupKind::ffn_neuron);
  EXPECT_THROW(f.run(target(TargetKind::ffn, 0.5), {}), UserError);
  Targets t = target(TargetKind::heads, 0.5);
  t.params = 0.2;
  EXPECT_THROW(f.run(t, {}), UserError);
  EXPECT_THROW(target_kind("head"), UserError);
  const ScoreRequest r = score_request(f.model->config(), target(TargetKind::heads, 0.5), {});
  EXPECT_TRUE(r.kv_units);
  EXPECT_EQ(r.kinds, std::set<GroupKind>{GroupKind::kv_group});
}

}  // namespace
}  // namespace secateur::methods
