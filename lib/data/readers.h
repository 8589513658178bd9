#pragma once
// Datasets from files. Torch-free.
//
//   text   (.txt, .text, .md, anything else named directly): one document per non-empty line,
//          as HF datasets' `text` loader reads files; language modelling only
//   jsonl  (.jsonl, .json): one JSON object per line; text_field / text_pair_field / label_field
//   tsv    (.tsv): a header row naming the columns, then one example per row; tab-separated with
//          no quoting (IANA text/tab-separated-values)
//   csv    (.csv): the same with commas and RFC 4180 quoting ("a, b" and "say ""hi""")
//
// A directory stands for every .txt/.text/.md/.jsonl/.json/.tsv/.csv file under it (recursively,
// sorted by path, hidden entries skipped). Errors name the file, the line and what was expected.
#include <string>
#include <vector>

#include "data/dataset.h"

namespace secateur::data {

struct FileOptions {
  std::vector<std::string> files;  // files or directories, read in order
  TaskKind task = TaskKind::language_modeling;
  std::string format = "auto";     // auto (by extension), text, jsonl, tsv, csv
  std::string text_field = "text";
  std::string text_pair_field;     // "" = single-sequence task
  std::string label_field = "label";
  // Class names in id order. Empty: labels that are all non-negative integers are their own ids
  // (names "0", "1", ...); otherwise the distinct names sorted byte-wise get ids 0, 1, ...
  std::vector<std::string> labels;
};

// UserError for a missing path, an unknown or unsuitable format, a missing field or column, a
// malformed line, a label outside `labels`, or no examples at all.
Dataset read_files(const FileOptions& options);

// The files a path stands for (itself, or the data files under a directory), sorted.
std::vector<std::string> expand_paths(const std::vector<std::string>& paths);

// One CSV/TSV record: the line it starts on and its fields.
struct Record {
  int line = 0;
  std::vector<std::string> fields;
};
// Splits delimited text into records (exposed for tests); with `quoting`, RFC 4180 quotes (a
// quote opens a quoted field only at the start of a field). `origin` names the source in errors.
std::vector<Record> parse_delimited(const std::string& text, char delimiter, bool quoting, const std::string& origin);

}  // namespace secateur::data
