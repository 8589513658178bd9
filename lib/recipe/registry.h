#pragma once
// Stage kinds and recipe sections are registered, not hard-coded: a later feature adds a stage
// (name + schema + factory) or a top-level section (`data:`, `slurm:`) without touching the
// engine. The registry is torch-free; a Stage's run() receives the torch-side RunState.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "recipe/schema.h"

namespace secateur::run {
struct RunState;
}

namespace secateur::recipe {

class Stage {
 public:
  virtual ~Stage() = default;
  virtual void run(run::RunState& state) = 0;
};

struct StageKind {
  std::string name;     // the key in `stages:` ("prune")
  std::string summary;  // one line for `secateur help stages`
  SchemaPtr schema;     // its options
  // Builds the stage from its validated options.
  std::function<std::unique_ptr<Stage>(const Value& options)> make;
};

struct Section {
  std::string name;  // top-level key ("model")
  std::string summary;
  SchemaPtr schema;
  bool required = false;
};

class Registry {
 public:
  void add_stage(StageKind kind);      // throws std::logic_error on a duplicate name
  void add_section(Section section);   // same
  const StageKind* stage(const std::string& name) const;
  const Section* section(const std::string& name) const;
  std::vector<std::string> stage_names() const;
  std::vector<std::string> section_names() const;

  // The schema of a whole recipe: name, seed, device, threads, the registered sections, and
  // `stages:` (a list of one-key mappings naming registered stage kinds).
  SchemaPtr recipe_schema() const;

 private:
  std::map<std::string, StageKind> stages_;
  std::vector<Section> sections_;
};

}  // namespace secateur::recipe
