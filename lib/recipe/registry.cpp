#include "recipe/registry.h"

#include <stdexcept>

#include "util/strings.h"

namespace secateur::recipe {

void Registry::add_stage(StageKind kind) {
  if (stages_.count(kind.name)) throw std::logic_error("stage kind '" + kind.name + "' registered twice");
  std::string name = kind.name;
  stages_.emplace(name, std::move(kind));
}

void Registry::add_section(Section section) {
  if (this->section(section.name)) throw std::logic_error("section '" + section.name + "' registered twice");
  sections_.push_back(std::move(section));
}

const StageKind* Registry::stage(const std::string& name) const {
  auto it = stages_.find(name);
  return it == stages_.end() ? nullptr : &it->second;
}

const Section* Registry::section(const std::string& name) const {
  for (const auto& s : sections_)
    if (s.name == name) return &s;
  return nullptr;
}

std::vector<std::string> Registry::stage_names() const {
  std::vector<std::string> out;
  for (const auto& [name, kind] : stages_) out.push_back(name);
  return out;
}

std::vector<std::string> Registry::section_names() const {
  std::vector<std::string> out;
  for (const auto& s : sections_) out.push_back(s.name);
  return out;
}

SchemaPtr Registry::recipe_schema() const {
  auto device = Schema::string()->check(
      [](const Value& v) -> std::string {
        const std::string& d = v.text();
        if (d == "cpu" || d == "cuda") return "";
        if (strings::starts_with(d, "cuda:") && d.size() > 5 &&
            d.find_first_not_of("0123456789", 5) == std::string::npos)
          return "";
        return "cpu, cuda or cuda:N";
      },
      "cpu, cuda or cuda:N");
  auto schema = Schema::structure()
                    ->field("name", Schema::string(), "Run name; the run directory is runs/<name>-<UTC time>. Default: the recipe's file name.")
                    ->field("seed", Schema::integer()->min(0), "Seeds torch and the data order: same recipe and seed, same result.", "0")
                    ->field("device", device, "Where tensors live and compute runs.", "cpu")
                    ->field("threads", Schema::integer()->min(0), "CPU threads for LibTorch (0 = all cores).", "0");
  for (const auto& s : sections_) {
    if (s.required)
      schema->required(s.name, s.schema, s.summary);
    else
      schema->field(s.name, s.schema, s.summary);
  }
  const Registry* self = this;
  auto stage_entry = Schema::one_key(
      "stage",
      [self](const std::string& name) -> SchemaPtr {
        const StageKind* k = self->stage(name);
        return k ? k->schema : nullptr;
      },
      [self] { return self->stage_names(); });
  schema->required("stages", Schema::list(stage_entry)->min_items(1),
                   "What to do, in order: each item is one stage (`- prune: {...}`); see `secateur help stages`.");
  return schema;
}

}  // namespace secateur::recipe
