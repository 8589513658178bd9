// Datasets from files (text, directories, JSONL, TSV, CSV) and seeded splits: what is read, and
// the exact message for each kind of bad input.
#include <gtest/gtest.h>

#include <functional>
#include <set>

#include "data/dataset.h"
#include "data/readers.h"
#include "data/temp_dir.h"
#include "util/error.h"

using namespace secateur::data;
using secateur::UserError;

namespace {

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const UserError& e) {
    return e.what();
  }
  return "(no error)";
}

Dataset numbered(size_t n) {
  Dataset d;
  d.name = "numbered";
  for (size_t i = 0; i < n; ++i) d.examples.push_back({"line " + std::to_string(i), "", -1, ""});
  return d;
}

FileOptions classification(std::vector<std::string> files) {
  FileOptions o;
  o.files = std::move(files);
  o.task = TaskKind::classification;
  return o;
}

}  // namespace

TEST(Splits, DeterministicDisjointAndCovering) {
  const Dataset d = numbered(1000);
  const SplitOptions o{0.1, 0.2, 42};
  const auto train = split_indices(d, Split::train, o), validation = split_indices(d, Split::validation, o),
             test = split_indices(d, Split::test, o);
  EXPECT_EQ(train.size(), 700u);
  EXPECT_EQ(validation.size(), 100u);
  EXPECT_EQ(test.size(), 200u);
  std::set<size_t> all(train.begin(), train.end());
  all.insert(validation.begin(), validation.end());
  all.insert(test.begin(), test.end());
  EXPECT_EQ(all.size(), 1000u);  // disjoint and covering
  EXPECT_TRUE(std::is_sorted(test.begin(), test.end()));  // reading order kept
  EXPECT_EQ(test, split_indices(d, Split::test, o));      // same seed, same split
  EXPECT_NE(test, split_indices(d, Split::test, {0.1, 0.2, 43}));
  // The platform-independent permutation: pinned values catch a changed generator.
  EXPECT_EQ(seeded_permutation(5, 0), seeded_permutation(5, 0));
  const auto p = seeded_permutation(10, 7);
  EXPECT_EQ(std::set<size_t>(p.begin(), p.end()).size(), 10u);
  SplitMix64 rng(0);
  EXPECT_EQ(rng.next(), 0xe220a8397b1dcdafull);  // SplitMix64's published first output for seed 0
}

TEST(Splits, BadFractionsAndTinyDatasets) {
  EXPECT_EQ(error_of([] { split_indices(numbered(10), Split::train, {0.6, 0.4, 0}); }),
            "data.splits: validation 0.6 and test 0.4 must be ≥ 0 and leave a training share (validation + test < 1)");
  EXPECT_EQ(error_of([] { split_indices(numbered(2), Split::train, {0.3, 0.3, 0}); }),
            "dataset numbered has 2 examples: too few for a validation share of 0.3 and a test share of 0.3 with any left to train on");
  EXPECT_EQ(error_of([] { split_indices(numbered(0), Split::train, {}); }), "dataset numbered has no examples");
  EXPECT_EQ(error_of([] { parse_split("dev"); }), "unknown split 'dev' (expected train, validation or test)");
}

TEST(Readers, TextFilesAndDirectories) {
  TempDir dir;
  dir.file("a.txt", "first line\n\n   \nsecond line\r\n");
  secateur::fs::create_directories(dir / "sub/deeper");
  dir.file("sub/b.md", "from markdown");
  dir.file("sub/deeper/c.jsonl", "{\"text\": \"from jsonl\", \"id\": 3}\n\n");
  dir.file("sub/ignored.bin", "binary");
  dir.file("sub/.hidden.txt", "hidden");
  FileOptions o;
  o.files = {dir.path};
  const Dataset d = read_files(o);
  ASSERT_EQ(d.examples.size(), 4u);
  EXPECT_EQ(d.examples[0].text, "first line");
  EXPECT_EQ(d.examples[0].source, dir / "a.txt:1");
  EXPECT_EQ(d.examples[1].text, "second line");  // blank lines skipped, \r dropped
  EXPECT_EQ(d.examples[1].source, dir / "a.txt:4");
  EXPECT_EQ(d.examples[2].text, "from markdown");
  EXPECT_EQ(d.examples[3].text, "from jsonl");
  EXPECT_EQ(expand_paths({dir.path}).size(), 3u);
  // The same text from another file name hashes the same (the cache key is content).
  FileOptions single;
  single.files = {dir.file("copy.txt", "\xEF\xBB\xBF" "first line\nsecond line\nfrom markdown\nfrom jsonl\n")};
  EXPECT_EQ(read_files(single).content_hash(), d.content_hash());
}

TEST(Readers, ClassificationFromTsvCsvAndJsonl) {
  TempDir dir;
  const auto tsv = dir.file("t.tsv", "sentence\tlabel\nit is \"good\"\tpos\nit is bad\tneg\n\nfine\tpos\n");
  Dataset d = read_files([&] {
    auto o = classification({tsv});
    o.text_field = "sentence";
    return o;
  }());
  ASSERT_EQ(d.examples.size(), 3u);
  EXPECT_EQ(d.examples[0].text, "it is \"good\"");  // TSV has no quoting
  EXPECT_EQ(d.label_names, (std::vector<std::string>{"neg", "pos"}));  // sorted names
  EXPECT_EQ(d.examples[0].label, 1);
  EXPECT_EQ(d.examples[1].label, 0);

  const auto csv = dir.file("p.csv", "premise,hypothesis,label\n\"a, b\",\"say \"\"hi\"\"\",2\n\"two\nlines\",c,0\n");
  auto o = classification({csv});
  o.text_field = "premise";
  o.text_pair_field = "hypothesis";
  d = read_files(o);
  ASSERT_EQ(d.examples.size(), 2u);
  EXPECT_TRUE(d.has_pairs);
  EXPECT_EQ(d.examples[0].text, "a, b");
  EXPECT_EQ(d.examples[0].text_pair, "say \"hi\"");
  EXPECT_EQ(d.examples[1].text, "two\nlines");
  EXPECT_EQ(d.examples[1].source, csv + ":3");
  EXPECT_EQ(d.label_names, (std::vector<std::string>{"0", "1", "2"}));  // integers are their own ids
  EXPECT_EQ(d.examples[0].label, 2);

  const auto jsonl = dir.file("j.jsonl", "{\"text\": \"x\", \"label\": \"b\"}\n{\"text\": \"y\", \"label\": \"a\"}\n");
  o = classification({jsonl});
  o.labels = {"b", "a"};  // given order decides the ids
  d = read_files(o);
  EXPECT_EQ(d.examples[0].label, 0);
  EXPECT_EQ(d.examples[1].label, 1);
}

TEST(Readers, BadInputsNameTheFileLineAndKey) {
  TempDir dir;
  EXPECT_EQ(error_of([&] {
              FileOptions o;
              o.files = {dir / "missing.txt"};
              read_files(o);
            }),
            "data.files: " + dir / "missing.txt" + ": no such file or directory");
  const auto empty = dir.file("empty.txt", "\n  \n\n");
  EXPECT_EQ(error_of([&] {
              FileOptions o;
              o.files = {empty};
              read_files(o);
            }),
            "data.files: " + empty + " holds no examples (every line is empty or blank)");
  secateur::fs::create_directories(dir / "nothing");
  dir.file("nothing/x.bin", "?");
  EXPECT_EQ(error_of([&] {
              FileOptions o;
              o.files = {dir / "nothing"};
              read_files(o);
            }),
            "data.files: " + dir / "nothing" + ": no .txt, .text, .md, .jsonl, .json, .tsv or .csv files in this directory");
  const auto tsv = dir.file("t.tsv", "sentence\tlabel\nok\t1\n");
  EXPECT_EQ(error_of([&] { read_files(classification({tsv})); }),
            tsv + ": no column 'text' (columns: sentence, label) — set data.text_field");
  const auto ragged = dir.file("r.tsv", "text\tlabel\nok\t1\nbad\n");
  EXPECT_EQ(error_of([&] { read_files(classification({ragged})); }), ragged + ":3: 1 fields, but the header has 2");
  const auto jsonl = dir.file("j.jsonl", "{\"text\": \"x\", \"label\": 1}\n{\"txt\": \"y\", \"label\": 0}\n");
  EXPECT_EQ(error_of([&] { read_files(classification({jsonl})); }),
            jsonl + ":2: no field 'text' (fields: label, txt) — set data.text_field");
  const auto broken = dir.file("b.jsonl", "{\"text\": \"x\"\n");
  EXPECT_EQ(error_of([&] {
              FileOptions o;
              o.files = {broken};
              read_files(o);
            }),
            broken + ":1: expected one JSON object per line");
  const auto number = dir.file("n.jsonl", "{\"text\": 3}\n");
  EXPECT_EQ(error_of([&] {
              FileOptions o;
              o.files = {number};
              read_files(o);
            }),
            number + ":1: field 'text' is number, expected a string");
  const auto text = dir.file("plain.txt", "a\n");
  EXPECT_EQ(error_of([&] { read_files(classification({text})); }),
            text + ": a plain text file has no labels; classification data needs a .tsv, .csv or .jsonl file (or data.format: "
                   "tsv|csv|jsonl) with columns 'text' and 'label'");
  const auto labelled = dir.file("l.jsonl", "{\"text\": \"x\", \"label\": \"maybe\"}\n");
  EXPECT_EQ(error_of([&] {
              auto o = classification({labelled});
              o.labels = {"yes", "no"};
              read_files(o);
            }),
            labelled + ":1: label 'maybe' is not one of data.labels (yes, no)");
  const auto unlabelled = dir.file("u.csv", "text,label\nx,\n");
  EXPECT_EQ(error_of([&] { read_files(classification({unlabelled})); }), unlabelled + ":2: empty label in field 'label'");
  const auto quote = dir.file("q.csv", "text,label\n\"open,1\n");
  EXPECT_EQ(error_of([&] { read_files(classification({quote})); }), quote + ":2: unterminated quoted field");
}
