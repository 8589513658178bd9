#include "dist/world.h"

#include <cctype>
#include <cstdlib>

#include "util/error.h"
#include "util/strings.h"

namespace secateur::dist {

std::string launcher_name(Launcher launcher) {
  switch (launcher) {
    case Launcher::torchrun: return "torchrun";
    case Launcher::slurm: return "slurm";
    case Launcher::none: break;
  }
  return "none";
}

Environment process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  };
}

namespace {

bool all_digits(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

int64_t integer_variable(const Environment& env, const std::string& name, int64_t min, int64_t max) {
  const auto text = env(name);
  if (!text) throw UserError("environment variable " + name + " is not set");
  if (!all_digits(*text) || text->size() > 12)
    throw UserError("environment variable " + name + "='" + *text + "': expected a non-negative integer");
  const int64_t value = std::stoll(*text);
  if (value < min || value > max)
    throw UserError("environment variable " + name + "=" + *text + ": expected " + std::to_string(min) + ".." +
                    std::to_string(max));
  return value;
}

int64_t optional_integer(const Environment& env, const std::string& name, int64_t fallback, int64_t min, int64_t max) {
  return env(name) ? integer_variable(env, name, min, max) : fallback;
}

World from_torchrun(const Environment& env) {
  World w;
  w.launcher = Launcher::torchrun;
  w.world_size = integer_variable(env, "WORLD_SIZE", 1, 1 << 20);
  w.rank = integer_variable(env, "RANK", 0, w.world_size - 1);
  w.local_rank = optional_integer(env, "LOCAL_RANK", 0, 0, w.world_size - 1);
  if (w.world_size > 1) {
    const auto addr = env("MASTER_ADDR");
    if (!addr || addr->empty()) throw UserError("WORLD_SIZE=" + std::to_string(w.world_size) + " but MASTER_ADDR is not set");
    w.master_addr = *addr;
    w.master_port = static_cast<int>(integer_variable(env, "MASTER_PORT", 1, 65535));
  }
  return w;
}

World from_slurm(const Environment& env) {
  World w;
  w.launcher = Launcher::slurm;
  w.world_size = integer_variable(env, "SLURM_NTASKS", 1, 1 << 20);
  w.rank = integer_variable(env, "SLURM_PROCID", 0, w.world_size - 1);
  w.local_rank = optional_integer(env, "SLURM_LOCALID", 0, 0, w.world_size - 1);
  if (const auto addr = env("MASTER_ADDR"); addr && !addr->empty()) {
    w.master_addr = *addr;
  } else {
    auto nodes = env("SLURM_JOB_NODELIST");
    if (!nodes) nodes = env("SLURM_NODELIST");
    if (!nodes || nodes->empty()) throw UserError("SLURM_NTASKS is set but SLURM_JOB_NODELIST is not (and no MASTER_ADDR)");
    w.master_addr = first_host(*nodes);
  }
  const int64_t job = optional_integer(env, "SLURM_JOB_ID", 0, 0, INT64_C(999999999999));
  w.master_port = static_cast<int>(optional_integer(env, "MASTER_PORT", 29500 + job % 10000, 1, 65535));
  return w;
}

}  // namespace

World world_from_environment(const Environment& env, bool use_slurm) {
  if (env("WORLD_SIZE") && env("RANK")) return from_torchrun(env);
  if (use_slurm && env("SLURM_NTASKS") && env("SLURM_PROCID")) return from_slurm(env);
  return World{};
}

// ---------------------------------------------------------------------------------------------
// Host lists

namespace {

constexpr size_t kMaxHosts = 1 << 20;

// Top-level items: commas inside brackets belong to ranges.
std::vector<std::string> split_items(const std::string& list) {
  std::vector<std::string> items;
  std::string current;
  int depth = 0;
  for (char c : list) {
    if (c == '[') ++depth;
    if (c == ']' && --depth < 0) throw UserError("host list '" + list + "': ']' without '['");
    if (c == ',' && depth == 0) {
      items.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  if (depth != 0) throw UserError("host list '" + list + "': '[' without ']'");
  items.push_back(current);
  return items;
}

// "01-03,07" → 01 02 03 07 (zero padding of each range's lower bound).
std::vector<std::string> expand_ranges(const std::string& ranges, const std::string& list) {
  std::vector<std::string> out;
  for (const std::string& part : strings::split(ranges, ',')) {
    const auto dash = part.find('-');
    const std::string lo = part.substr(0, dash);
    const std::string hi = dash == std::string::npos ? lo : part.substr(dash + 1);
    if (!all_digits(lo) || !all_digits(hi) || lo.size() > 12 || hi.size() > 12)
      throw UserError("host list '" + list + "': range '" + part + "' is not N or LO-HI");
    const int64_t a = std::stoll(lo), b = std::stoll(hi);
    if (b < a) throw UserError("host list '" + list + "': range '" + part + "' ends before it starts");
    if (static_cast<size_t>(b - a) >= kMaxHosts) throw UserError("host list '" + list + "': range '" + part + "' is too long");
    for (int64_t i = a; i <= b; ++i) {
      std::string n = std::to_string(i);
      if (n.size() < lo.size()) n.insert(0, lo.size() - n.size(), '0');
      out.push_back(std::move(n));
    }
  }
  return out;
}

std::vector<std::string> expand_item(const std::string& item, const std::string& list) {
  if (item.empty()) throw UserError("host list '" + list + "': empty host name");
  std::vector<std::string> names{""};
  size_t pos = 0;
  while (pos < item.size()) {
    const size_t open = item.find('[', pos);
    const std::string literal = item.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
    for (auto& n : names) n += literal;
    if (open == std::string::npos) break;
    const size_t close = item.find(']', open);
    const auto values = expand_ranges(item.substr(open + 1, close - open - 1), list);
    if (names.size() * values.size() > kMaxHosts) throw UserError("host list '" + list + "' names too many hosts");
    std::vector<std::string> product;
    product.reserve(names.size() * values.size());
    for (const auto& n : names)
      for (const auto& v : values) product.push_back(n + v);
    names = std::move(product);
    pos = close + 1;
  }
  return names;
}

}  // namespace

std::vector<std::string> expand_hostlist(const std::string& list) {
  std::vector<std::string> hosts;
  for (const auto& item : split_items(list)) {
    auto names = expand_item(item, list);
    if (hosts.size() + names.size() > kMaxHosts) throw UserError("host list '" + list + "' names too many hosts");
    hosts.insert(hosts.end(), names.begin(), names.end());
  }
  return hosts;
}

std::string first_host(const std::string& list) {
  // Only the first item matters; expanding it alone keeps huge lists cheap.
  const auto items = split_items(list);
  return expand_item(items.front(), list).front();
}

}  // namespace secateur::dist
