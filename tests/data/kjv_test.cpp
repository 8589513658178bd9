// The built-in King James Bible corpus and tasks: the parse of Debian's `bible` output, the book
// table, the labels of the classification tasks and the fixed split by chapter.
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <set>

#include "data/dataset.h"
#include "data/kjv.h"
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

}  // namespace

TEST(Kjv, ParsesEveryVerseOfTheSixtySixBooks) {
  const auto& verses = kjv_verses();
  ASSERT_EQ(verses.size(), 31102u);
  std::set<int> books;
  for (const auto& v : verses) books.insert(v.book);
  EXPECT_EQ(books.size(), 66u);
  EXPECT_EQ(kjv_books().size(), 66u);
  EXPECT_EQ(verses.front().reference(), "Genesis 1:1");
  EXPECT_EQ(verses.front().text, "In the beginning God created the heaven and the earth.");
  EXPECT_EQ(verses.back().reference(), "Revelation 22:21");
  EXPECT_EQ(verses.back().text, "The grace of our Lord Jesus Christ be with you all. Amen.");
  // The shortest verse, and one of the source's double spaces collapsed.
  bool wept = false;
  for (const auto& v : verses) {
    if (v.reference() == "John 11:35") wept = v.text == "Jesus wept.";
    EXPECT_EQ(v.text.find("  "), std::string::npos) << v.reference();
    EXPECT_FALSE(v.text.empty());
  }
  EXPECT_TRUE(wept);
  std::map<int, int> chapters_of_psalms;
  for (const auto& v : verses)
    if (std::string(kjv_books()[v.book].name) == "Psalms") chapters_of_psalms[v.chapter]++;
  EXPECT_EQ(chapters_of_psalms.size(), 150u);
  EXPECT_EQ(chapters_of_psalms[119], 176);
}

TEST(Kjv, LanguageModellingCorpusHasAFixedSplitByChapter) {
  const Dataset d = kjv_dataset("kjv");
  EXPECT_EQ(d.task, TaskKind::language_modeling);
  ASSERT_EQ(d.examples.size(), 31102u);
  EXPECT_EQ(d.examples[0].source, "Ge1:1");
  EXPECT_EQ(d.examples[0].label, -1);
  // The split ignores SplitOptions and keeps whole chapters together.
  const auto test = split_indices(d, Split::test, {0.5, 0.3, 77});
  EXPECT_EQ(test, split_indices(d, Split::test, {}));
  const auto train = split_indices(d, Split::train, {}), validation = split_indices(d, Split::validation, {});
  EXPECT_EQ(train.size() + validation.size() + test.size(), 31102u);
  std::map<std::string, Split> chapter_split;
  const auto& verses = kjv_verses();
  for (auto [indices, split] : {std::pair{&train, Split::train}, {&validation, Split::validation}, {&test, Split::test}})
    for (size_t i : *indices) {
      const std::string chapter = std::to_string(verses[i].book) + ":" + std::to_string(verses[i].chapter);
      auto [it, fresh] = chapter_split.emplace(chapter, split);
      EXPECT_EQ(it->second, split) << "chapter " << chapter << " straddles two splits";
    }
  EXPECT_EQ(chapter_split.size(), 1189u);
  // Chapters 18 and 19 of each 20 in canonical order: Genesis 19 is validation, Genesis 20 test.
  EXPECT_EQ(verses[validation.front()].reference(), "Genesis 19:1");
  EXPECT_EQ(verses[test.front()].reference(), "Genesis 20:1");
  EXPECT_NEAR(static_cast<double>(test.size()) / 31102, 0.05, 0.01);
}

TEST(Kjv, ClassificationTasksLabelEveryVerse) {
  const Dataset testament = kjv_dataset("kjv_testament");
  EXPECT_EQ(testament.task, TaskKind::classification);
  EXPECT_EQ(testament.label_names, (std::vector<std::string>{"old", "new"}));
  std::map<int, int> counts;
  for (const auto& e : testament.examples) counts[e.label]++;
  EXPECT_EQ(counts[0], 23145);  // Genesis–Malachi
  EXPECT_EQ(counts[1], 7957);   // Matthew–Revelation
  EXPECT_EQ(counts.size(), 2u);

  const Dataset genre = kjv_dataset("kjv_genre");
  EXPECT_EQ(genre.label_names, (std::vector<std::string>{"law", "history", "wisdom", "prophets", "gospels", "epistles"}));
  const auto& verses = kjv_verses();
  auto genre_of = [&](const std::string& ref) {
    for (size_t i = 0; i < verses.size(); ++i)
      if (verses[i].reference() == ref) return genre.label_names[genre.examples[i].label];
    return std::string("?");
  };
  EXPECT_EQ(genre_of("Genesis 1:1"), "law");
  EXPECT_EQ(genre_of("Ruth 1:1"), "history");
  EXPECT_EQ(genre_of("Psalms 23:1"), "wisdom");
  EXPECT_EQ(genre_of("Malachi 4:6"), "prophets");
  EXPECT_EQ(genre_of("John 11:35"), "gospels");
  EXPECT_EQ(genre_of("Acts 1:1"), "history");
  EXPECT_EQ(genre_of("Jude 1:25"), "epistles");
  EXPECT_EQ(genre_of("Revelation 22:21"), "prophets");
  for (const auto& e : genre.examples) ASSERT_GE(e.label, 0);

  const Dataset books = kjv_dataset("kjv_books");
  ASSERT_EQ(books.label_names.size(), 66u);
  EXPECT_EQ(books.label_names.front(), "Genesis");
  EXPECT_EQ(books.label_names.back(), "Revelation");
  EXPECT_EQ(books.examples.back().label, 65);
  // Same verses, same fixed split in every task.
  EXPECT_EQ(books.fixed_split, testament.fixed_split);
  EXPECT_NE(books.content_hash(), testament.content_hash());
}

TEST(Kjv, UnknownNamesAndABrokenSourceAreUserErrors) {
  EXPECT_EQ(error_of([] { kjv_dataset("kjv_book"); }),
            "unknown built-in dataset 'kjv_book' — did you mean 'kjv_books'? (built-ins: kjv, kjv_testament, kjv_genre, kjv_books)");
  EXPECT_EQ(error_of([] { read_kjv("/nonexistent/bible"); }),
            "built-in corpus kjv needs the program '/nonexistent/bible' from Debian's bible-kjv and bible-kjv-text packages "
            "(scripts/install-deps.sh installs them)");
  TempDir dir;
  const std::string fake = dir.file("bible", "#!/bin/sh\necho 'Ge1:1 In the beginning'\necho 'Mat1:1 The book'\n", true);
  EXPECT_EQ(error_of([&] { read_kjv(fake); }),
            "output of '" + fake + " -f': line 2: expected book Ge or Exo, got 'Mat' (line: \"Mat1:1 The book\")");
  const std::string failing = dir.file("failing", "#!/bin/sh\necho 'no data file' >&2\nexit 3\n", true);
  EXPECT_NE(error_of([&] { read_kjv(failing); }).find("failed (exit 3): no data file"), std::string::npos);
  EXPECT_EQ(error_of([] { parse_kjv("Ge1:1 In the beginning\n", "t"); }),
            "t: expected the 31102 verses of all 66 books, got 1 verses ending in Genesis");
  EXPECT_EQ(error_of([] { parse_kjv("Ge1 In the beginning\n", "t"); }),
            "t: line 1: expected \"<book><chapter>:<verse> <text>\" (line: \"Ge1 In the beginning\")");
}
