#pragma once
// Human-readable reports built from what a run recorded (report.json and metrics.jsonl):
//   report.md    a paper-style table (stage, params, FLOPs, sparsity, metrics, speedup vs dense)
//                and the per-layer kept heads / FFN width;
//   report.html  one self-contained file (inline SVG, no scripts, no network): metric vs
//                sparsity, a per-layer heatmap of kept heads and FFN width, training curves.
// Conventions stages follow when they record results (all optional):
//   params, params_non_embedding, flops_per_token, sparsity (fraction of the dense model's
//   non-embedding parameters removed, as the prune stage records it; derived from
//   params_non_embedding against the first row that has it when a stage records none),
//   accuracy, macro_f1, perplexity, loss (metrics), tokens_per_s (measured throughput),
//   per_layer: [{heads, kv_heads, ffn}].
// Torch-free.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace secateur::report {

// One row per stage that recorded a metric or a shape.
struct Row {
  std::string run, stage;
  nlohmann::json values;  // the stage's results
};

std::vector<Row> rows_of(const nlohmann::json& report, const std::string& run_name = "");

// report.md of one run.
std::string markdown(const nlohmann::json& report);
// report.html of one run; `events` are metrics.jsonl's lines.
std::string html(const nlohmann::json& report, const std::vector<nlohmann::json>& events);

// Comparison over many runs (`secateur report RUN_DIR...`): one row per run (its last stage
// with a metric), sorted by sparsity.
std::string merged_markdown(const std::vector<nlohmann::json>& reports, const std::vector<std::string>& names);
std::string merged_html(const std::vector<nlohmann::json>& reports, const std::vector<std::string>& names);

// Reads metrics.jsonl, skipping a torn last line (a crash mid-write).
std::vector<nlohmann::json> read_events(const std::string& path);

// Writes report.md and report.html next to report.json in `run_dir` (atomically).
void write_run_reports(const std::string& run_dir, const nlohmann::json& report);

}  // namespace secateur::report
