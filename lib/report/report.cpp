#include "report/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "report/svg.h"
#include "util/fs.h"
#include "util/strings.h"

namespace secateur::report {
namespace {

using json = nlohmann::json;

const std::vector<std::string> kShapeKeys = {"params", "flops_per_token", "sparsity"};
const std::vector<std::string> kMetricKeys = {"accuracy", "macro_f1", "perplexity", "loss", "tokens_per_s"};

bool has_number(const json& v, const std::string& key) { return v.is_object() && v.contains(key) && v[key].is_number(); }

std::string fmt(const char* pattern, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, pattern, v);
  return buf;
}

std::string cell(const std::string& key, const json& values) {
  if (!has_number(values, key)) return "—";
  double v = values[key].get<double>();
  if (key == "params" || key == "flops_per_token" || key == "tokens_per_s") return strings::human_count(v);
  if (key == "sparsity") return fmt("%.1f%%", 100 * v);
  if (key == "speedup") return fmt("%.2f×", v);
  if (key == "perplexity" || key == "loss") return fmt("%.3f", v);
  return fmt("%.4f", v);
}

const std::map<std::string, std::string> kHeaders = {
    {"params", "params"}, {"flops_per_token", "FLOPs/token"}, {"sparsity", "sparsity (non-embedding)"}, {"accuracy", "accuracy"},
    {"macro_f1", "macro-F1"}, {"perplexity", "perplexity"}, {"loss", "loss"}, {"tokens_per_s", "tokens/s"},
    {"speedup", "speedup vs dense"}};

// Fills sparsity and speedup from the first (dense) row where the stage did not record them.
// Sparsity has one definition everywhere, the prune stage's: the fraction of the dense model's
// NON-EMBEDDING parameters removed, 1 - params_non_embedding / dense params_non_embedding
// (embeddings and the LM head are never pruned, so counting them would understate sparsity by
// an amount that depends on the vocabulary). A row without params_non_embedding gets none.
void derive(std::vector<Row>& rows) {
  double dense_non_embedding = 0, dense_speed = 0;
  for (auto& r : rows) {
    if (has_number(r.values, "params_non_embedding") && dense_non_embedding == 0)
      dense_non_embedding = r.values["params_non_embedding"].get<double>();
    // Speed compares evaluations only: a train stage's tokens/s is training throughput.
    const bool eval_speed = has_number(r.values, "tokens_per_s") && r.stage.size() > 5 &&
                            r.stage.compare(r.stage.size() - 5, 5, " eval") == 0;
    if (eval_speed && dense_speed == 0) dense_speed = r.values["tokens_per_s"].get<double>();
    if (!has_number(r.values, "sparsity") && has_number(r.values, "params_non_embedding") && dense_non_embedding > 0)
      r.values["sparsity"] = 1.0 - r.values["params_non_embedding"].get<double>() / dense_non_embedding;
    if (eval_speed && dense_speed > 0)
      r.values["speedup"] = r.values["tokens_per_s"].get<double>() / dense_speed;
  }
}

std::vector<std::string> columns_of(const std::vector<Row>& rows) {
  std::vector<std::string> cols;
  for (const auto& key : kShapeKeys) cols.push_back(key);
  for (const auto& key : kMetricKeys)
    for (const auto& r : rows)
      if (has_number(r.values, key)) {
        cols.push_back(key);
        break;
      }
  for (const auto& r : rows)
    if (has_number(r.values, "speedup")) {
      cols.push_back("speedup");
      break;
    }
  return cols;
}

std::string md_table(const std::vector<Row>& rows, bool with_run) {
  auto cols = columns_of(rows);
  std::string head = with_run ? "| run | stage |" : "| stage |", rule = with_run ? "|---|---|" : "|---|";
  for (const auto& c : cols) {
    head += " " + kHeaders.at(c) + " |";
    rule += "---:|";
  }
  std::string out = head + "\n" + rule + "\n";
  for (const auto& r : rows) {
    std::string line = with_run ? "| " + r.run + " | " + r.stage + " |" : "| " + r.stage + " |";
    for (const auto& c : cols) line += " " + cell(c, r.values) + " |";
    out += line + "\n";
  }
  return out;
}

std::string html_table(const std::vector<Row>& rows, bool with_run) {
  auto cols = columns_of(rows);
  std::string out = "<table>\n<tr>" + std::string(with_run ? "<th>run</th>" : "") + "<th>stage</th>";
  for (const auto& c : cols) out += "<th>" + svg::escape(kHeaders.at(c)) + "</th>";
  out += "</tr>\n";
  for (const auto& r : rows) {
    out += "<tr>" + (with_run ? "<td>" + svg::escape(r.run) + "</td>" : std::string()) + "<td>" + svg::escape(r.stage) + "</td>";
    for (const auto& c : cols) out += "<td class=\"n\">" + svg::escape(cell(c, r.values)) + "</td>";
    out += "</tr>\n";
  }
  return out + "</table>\n";
}

const json* last_per_layer(const std::vector<Row>& rows) {
  for (auto it = rows.rbegin(); it != rows.rend(); ++it)
    if (it->values.contains("per_layer") && it->values["per_layer"].is_array()) return &it->values["per_layer"];
  return nullptr;
}

const json* first_per_layer(const std::vector<Row>& rows) {
  for (const auto& r : rows)
    if (r.values.contains("per_layer") && r.values["per_layer"].is_array()) return &r.values["per_layer"];
  return nullptr;
}

int64_t get_int(const json& layer, const char* key) { return layer.contains(key) && layer[key].is_number() ? layer[key].get<int64_t>() : 0; }

std::string header_lines(const json& report) {
  std::string out;
  out += "- status: **" + report.value("status", std::string("?")) + "**";
  if (report.contains("error")) out += " — " + report["error"].get<std::string>();
  out += "\n- recipe: `" + report.value("recipe", std::string("?")) + "` (hash " + report.value("recipe_hash", std::string("?")) + ")\n";
  out += "- secateur " + report.value("secateur_version", std::string("?")) + " (git " + report.value("git_commit", std::string("?")) +
         "), LibTorch " + report.value("torch_version", std::string("?")) + ", device " + report.value("device", std::string("?")) +
         ", seed " + (report.contains("seed") ? report["seed"].dump() : "?") + "\n";
  if (report.contains("started"))
    out += "- started " + report["started"].get<std::string>() +
           (report.contains("finished") ? ", finished " + report["finished"].get<std::string>() : std::string()) + "\n";
  return out;
}

std::vector<std::string> notes_of(const json& report) {
  std::vector<std::string> notes;
  if (!report.contains("stages")) return notes;
  for (const auto& s : report["stages"])
    if (s.contains("results") && s["results"].contains("note") && s["results"]["note"].is_string())
      notes.push_back(s["results"]["note"].get<std::string>());
  return notes;
}

std::string metric_chart(const std::vector<Row>& rows) {
  std::vector<svg::Series> series;
  for (const auto& key : kMetricKeys) {
    if (key == "tokens_per_s") continue;
    svg::Series s{kHeaders.at(key), {}};
    for (const auto& r : rows)
      if (has_number(r.values, key) && has_number(r.values, "sparsity"))
        s.points.emplace_back(r.values["sparsity"].get<double>(), r.values[key].get<double>());
    if (!s.points.empty()) series.push_back(s);
  }
  if (series.empty()) return "";
  return svg::line_chart("metric vs sparsity", "sparsity (fraction of dense non-embedding parameters removed)", "metric", series);
}

std::string layer_heatmap(const std::vector<Row>& rows) {
  const json* dense = first_per_layer(rows);
  const json* now = last_per_layer(rows);
  if (!dense || !now || now->empty()) return "";
  std::vector<std::string> labels;
  std::vector<std::vector<double>> values;
  for (size_t l = 0; l < now->size(); ++l) {
    const json& d = l < dense->size() ? (*dense)[l] : (*now)[l];
    auto frac = [&](const char* key) {
      int64_t base = get_int(d, key);
      return base > 0 ? static_cast<double>(get_int((*now)[l], key)) / static_cast<double>(base) : 0.0;
    };
    labels.push_back("layer " + std::to_string(l));
    values.push_back({frac("heads"), frac("ffn")});
  }
  return svg::heatmap("kept per layer (vs the first recorded shape)", labels, {"heads", "FFN"}, values);
}

std::string training_charts(const std::vector<json>& events) {
  // One chart per stage: every numeric value recorded with a step.
  std::map<int, std::map<std::string, svg::Series>> by_stage;
  std::map<int, std::string> stage_names;
  for (const auto& e : events) {
    if (!e.contains("step") || !e.contains("values") || !e["values"].is_object()) continue;
    int stage = e.value("stage_index", 0);
    stage_names[stage] = e.value("stage", std::string("stage"));
    for (const auto& [key, v] : e["values"].items())
      if (v.is_number()) {
        auto& s = by_stage[stage][key];
        s.name = key;
        s.points.emplace_back(e["step"].get<double>(), v.get<double>());
      }
  }
  std::string out;
  for (auto& [stage, series] : by_stage) {
    std::vector<svg::Series> list;
    for (auto& [key, s] : series)
      if (s.points.size() >= 2) list.push_back(s);
    if (!list.empty())
      out += svg::line_chart("[" + std::to_string(stage) + "] " + stage_names[stage] + ": training curves", "step", "value", list);
  }
  return out;
}

// Pruning curves: the prune stages whose curve has ≥ 2 points with a params_removed_fraction (an
// estimate-and-allocate prune; block search's curve is per step and has none), in stage order.
struct PruneCurve {
  std::string stage;               // "2. prune"
  std::vector<json> points;
  std::vector<std::string> kinds;  // "heads", "ffn"... (from <kind>_removed_fraction)
  std::vector<std::string> values; // calibration_loss, then the metrics of kMetricKeys present
};

std::vector<PruneCurve> prune_curves(const json& report) {
  std::vector<PruneCurve> out;
  if (!report.contains("stages") || !report["stages"].is_array()) return out;
  int index = 0;
  for (const auto& s : report["stages"]) {
    ++index;
    if (s.value("kind", std::string()) != "prune" || !s.contains("results") || !s["results"].is_object()) continue;
    const json& r = s["results"];
    if (!r.contains("curve") || !r["curve"].is_array()) continue;
    PruneCurve c{std::to_string(index) + ". prune", {}, {}, {}};
    for (const auto& p : r["curve"])
      if (has_number(p, "params_removed_fraction")) c.points.push_back(p);
    if (c.points.size() < 2) continue;
    const std::string suffix = "_removed_fraction";
    for (const auto& p : c.points)
      for (const auto& [key, v] : p.items())
        if (v.is_number() && key != "params_removed_fraction" && key.size() > suffix.size() &&
            key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0) {
          const std::string kind = key.substr(0, key.size() - suffix.size());
          if (std::find(c.kinds.begin(), c.kinds.end(), kind) == c.kinds.end()) c.kinds.push_back(kind);
        }
    std::vector<std::string> candidates = {"calibration_loss"};
    for (const auto& key : kMetricKeys)
      if (key != "tokens_per_s") candidates.push_back(key);
    for (const auto& key : candidates)
      for (const auto& p : c.points)
        if (has_number(p, key)) {
          c.values.push_back(key);
          break;
        }
    out.push_back(c);
  }
  return out;
}

std::string curve_header(const std::string& key) { return key == "calibration_loss" ? "calibration loss" : kHeaders.at(key); }

std::string curve_cell(const std::string& key, const json& point) {
  if (key == "round") return has_number(point, "round") ? std::to_string(point["round"].get<int64_t>()) : "—";
  if (!has_number(point, key)) return "—";
  if (key == "calibration_loss") return fmt("%.4f", point[key].get<double>());
  if (key.size() > 17 && key.compare(key.size() - 17, 17, "_removed_fraction") == 0) return fmt("%.1f%%", 100 * point[key].get<double>());
  return cell(key, point);
}

// Columns of a curve table: round, params removed, each kind's share removed, then the values.
std::vector<std::pair<std::string, std::string>> curve_columns(const PruneCurve& c) {
  std::vector<std::pair<std::string, std::string>> cols = {{"round", "round"}, {"params_removed_fraction", "params removed"}};
  for (const auto& k : c.kinds) cols.push_back({k + "_removed_fraction", k + " removed"});
  for (const auto& v : c.values) cols.push_back({v, curve_header(v)});
  return cols;
}

std::string md_curves(const json& report) {
  const auto curves = prune_curves(report);
  if (curves.empty()) return "";
  std::string out = "\n## Pruning curve\n";
  for (const auto& c : curves) {
    const auto cols = curve_columns(c);
    out += "\n" + c.stage + " (one row per round; params removed: fraction of the dense model's non-embedding parameters)\n\n|";
    std::string rule = "|";
    for (const auto& [key, header] : cols) {
      out += " " + header + " |";
      rule += "---:|";
    }
    out += "\n" + rule + "\n";
    for (const auto& p : c.points) {
      out += "|";
      for (const auto& [key, header] : cols) out += " " + curve_cell(key, p) + " |";
      out += "\n";
    }
  }
  return out;
}

std::string html_curves(const json& report) {
  const auto curves = prune_curves(report);
  if (curves.empty()) return "";
  std::string out = "<h2>Pruning curve</h2>\n";
  for (const auto& c : curves) {
    const auto cols = curve_columns(c);
    out += "<table>\n<tr>";
    for (const auto& [key, header] : cols) out += "<th>" + svg::escape(header) + "</th>";
    out += "</tr>\n";
    for (const auto& p : c.points) {
      out += "<tr>";
      for (const auto& [key, header] : cols) out += "<td class=\"n\">" + svg::escape(curve_cell(key, p)) + "</td>";
      out += "</tr>\n";
    }
    out += "</table>\n";
    // Metric vs sparsity: the evaluation metrics in one chart, the losses in another (their scales differ).
    std::vector<svg::Series> metrics, losses;
    for (const auto& key : c.values) {
      svg::Series series{curve_header(key), {}};
      for (const auto& p : c.points)
        if (has_number(p, key)) series.points.emplace_back(p["params_removed_fraction"].get<double>(), p[key].get<double>());
      if (series.points.size() < 2) continue;
      (key == "calibration_loss" || key == "loss" ? losses : metrics).push_back(series);
    }
    const std::string x = "params removed (fraction of dense non-embedding parameters)";
    if (!metrics.empty()) out += svg::line_chart("[" + c.stage + "] metric vs sparsity", x, "metric", metrics);
    if (!losses.empty()) out += svg::line_chart("[" + c.stage + "] loss vs sparsity", x, "loss", losses);
  }
  return out;
}

const char* kStyle =
    "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}svg{margin:0.5em 1em 0.5em 0}</style>\n";

bool is_eval(const Row& r) { return r.stage.size() > 5 && r.stage.compare(r.stage.size() - 5, 5, " eval") == 0; }

// The run's last row with a metric; `referenced` says whether an earlier row of the same run (its
// dense evaluation or its prune stage) gave it a sparsity and a speed to compare with.
Row final_row(const json& report, const std::string& name, bool& referenced) {
  auto rows = rows_of(report, name);
  derive(rows);
  for (auto it = rows.rbegin(); it != rows.rend(); ++it)
    for (const auto& key : kMetricKeys)
      if (has_number(it->values, key)) {
        referenced = false;
        for (auto before = it + 1; before != rows.rend(); ++before) referenced |= has_number(before->values, "params_non_embedding");
        return *it;
      }
  referenced = true;
  if (!rows.empty()) return rows.back();
  return Row{name, "—", json::object()};
}

// A run that learned its masks and only evaluated the result has no dense row of its own: its
// sparsity and speedup come from the merged table's dense run, the largest model evaluated.
void derive_across_runs(std::vector<Row>& rows, const std::vector<bool>& referenced) {
  const Row* dense = nullptr;
  for (const Row& r : rows)
    if (has_number(r.values, "params_non_embedding") &&
        (!dense || r.values["params_non_embedding"].get<double>() > dense->values["params_non_embedding"].get<double>()))
      dense = &r;
  if (!dense) return;
  const json reference = dense->values;
  const bool dense_eval = is_eval(*dense) && has_number(reference, "tokens_per_s");
  for (size_t i = 0; i < rows.size(); ++i) {
    if (referenced[i] || !has_number(rows[i].values, "params_non_embedding")) continue;
    json& v = rows[i].values;
    v["sparsity"] = 1.0 - v["params_non_embedding"].get<double>() / reference["params_non_embedding"].get<double>();
    if (dense_eval && is_eval(rows[i]) && has_number(v, "tokens_per_s"))
      v["speedup"] = v["tokens_per_s"].get<double>() / reference["tokens_per_s"].get<double>();
  }
}

std::vector<Row> merged_rows(const std::vector<json>& reports, const std::vector<std::string>& names) {
  std::vector<Row> rows;
  std::vector<bool> referenced;
  for (size_t i = 0; i < reports.size(); ++i) {
    bool has_reference = true;
    rows.push_back(final_row(reports[i], i < names.size() ? names[i] : "", has_reference));
    referenced.push_back(has_reference);
    const std::string status = reports[i].value("status", std::string("?"));
    if (status != "completed") rows.back().stage += " (run " + status + ")";
  }
  derive_across_runs(rows, referenced);
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    double sa = has_number(a.values, "sparsity") ? a.values["sparsity"].get<double>() : -1;
    double sb = has_number(b.values, "sparsity") ? b.values["sparsity"].get<double>() : -1;
    return sa < sb;
  });
  return rows;
}

}  // namespace

std::vector<Row> rows_of(const json& report, const std::string& run_name) {
  std::vector<Row> rows;
  if (!report.contains("stages") || !report["stages"].is_array()) return rows;
  int index = 0;
  for (const auto& s : report["stages"]) {
    ++index;
    if (!s.contains("results") || !s["results"].is_object()) continue;
    const json& v = s["results"];
    bool useful = v.contains("per_layer");
    for (const auto& k : kShapeKeys) useful |= has_number(v, k);
    for (const auto& k : kMetricKeys) useful |= has_number(v, k);
    if (useful) rows.push_back({run_name, std::to_string(index) + ". " + s.value("kind", std::string("?")), v});
  }
  return rows;
}

std::string markdown(const json& report) {
  auto rows = rows_of(report);
  derive(rows);
  std::string out = "# " + report.value("name", std::string("run")) + "\n\n" + header_lines(report);
  for (const auto& n : notes_of(report)) out += "- note: " + n + "\n";
  out += "\n## Results\n\n" + (rows.empty() ? std::string("No stage recorded a metric or a shape.\n") : md_table(rows, false));
  if (const json* layers = last_per_layer(rows)) {
    out += "\n## Per-layer shape (last recorded)\n\n| layer | heads | KV heads | FFN |\n|---:|---:|---:|---:|\n";
    for (size_t l = 0; l < layers->size(); ++l)
      out += "| " + std::to_string(l) + " | " + std::to_string(get_int((*layers)[l], "heads")) + " | " +
             std::to_string(get_int((*layers)[l], "kv_heads")) + " | " + std::to_string(get_int((*layers)[l], "ffn")) + " |\n";
  }
  out += md_curves(report);
  return out;
}

std::string html(const json& report, const std::vector<json>& events) {
  auto rows = rows_of(report);
  derive(rows);
  const std::string name = report.value("name", std::string("run"));
  std::string out = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + svg::escape(name) + "</title>\n" + kStyle +
                    "</head><body>\n<h1>" + svg::escape(name) + "</h1>\n<ul>\n";
  for (const auto& line : strings::split(header_lines(report), '\n'))
    if (!line.empty()) out += "<li>" + svg::escape(line.substr(2)) + "</li>\n";
  for (const auto& n : notes_of(report)) out += "<li>note: " + svg::escape(n) + "</li>\n";
  out += "</ul>\n<h2>Results</h2>\n" + (rows.empty() ? std::string("<p>No stage recorded a metric or a shape.</p>\n") : html_table(rows, false));
  out += metric_chart(rows) + layer_heatmap(rows);
  out += html_curves(report);
  std::string curves = training_charts(events);
  if (!curves.empty()) out += "<h2>Training</h2>\n" + curves;
  return out + "</body></html>\n";
}

std::string merged_markdown(const std::vector<json>& reports, const std::vector<std::string>& names) {
  return md_table(merged_rows(reports, names), true);
}

std::string merged_html(const std::vector<json>& reports, const std::vector<std::string>& names) {
  auto rows = merged_rows(reports, names);
  return "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>secateur comparison</title>\n" + std::string(kStyle) +
         "</head><body>\n<h1>Comparison of " + std::to_string(rows.size()) + " runs</h1>\n" + html_table(rows, true) +
         metric_chart(rows) + "</body></html>\n";
}

std::vector<json> read_events(const std::string& path) {
  std::vector<json> events;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      events.push_back(json::parse(line));
    } catch (const json::exception&) {
      // A torn last line from a crash mid-write carries nothing we can use.
    }
  }
  return events;
}

void write_run_reports(const std::string& run_dir, const json& report) {
  fs::write_atomic(fs::join(run_dir, "report.md"), markdown(report));
  fs::write_atomic(fs::join(run_dir, "report.html"), html(report, read_events(fs::join(run_dir, "metrics.jsonl"))));
}

}  // namespace secateur::report
