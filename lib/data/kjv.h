#pragma once
// The built-in corpus and tasks: the King James Bible (public domain) as Debian's bible-kjv
// packages ship it. Its `bible` program decodes the compressed /usr/lib/bible.data and prints one
// verse per line ("Ge1:1 In the beginning God created the heaven and the earth."); the file's own
// format is an undocumented compression scheme, so the program is the robust way in.
//
//   kjv            language modelling: the 31,102 verses in canonical order
//   kjv_testament  classification of a verse: old / new testament (2 classes)
//   kjv_genre      classification of a verse: law, history, wisdom, prophets, gospels, epistles
//   kjv_books      classification of a verse: which of the 66 books
//
// All four share one fixed split by chapter (whole chapters go to one split, so neighbouring
// verses never straddle train and test): of the 1,189 chapters in canonical order, number c
// (0-based) is validation when c mod 20 = 18, test when c mod 20 = 19, train otherwise.
#include <string>
#include <vector>

#include "data/dataset.h"

namespace secateur::data {

struct Book {
  const char* name;    // "Genesis"
  const char* abbrev;  // as `bible` prints it: "Ge"
  bool new_testament;
  const char* genre;   // law, history, wisdom, prophets, gospels, epistles
};
const std::vector<Book>& kjv_books();  // the 66 books in canonical order

struct Verse {
  int book = 0;  // index into kjv_books()
  int chapter = 0, verse = 0;
  std::string text;  // whitespace collapsed to single spaces, trimmed
  std::string reference() const;  // "Genesis 1:1"
};

// read_kjv() of `bible` (the program on PATH, or $SECATEUR_BIBLE), once per process.
const std::vector<Verse>& kjv_verses();

// Runs `program` and parses its output: UserError when the program is missing (naming the Debian
// packages), fails, or prints anything that is not the 31,102 verses in canonical order.
std::vector<Verse> read_kjv(const std::string& program);

// Parses `bible -f` output (exposed for tests of the parser's checks). `origin` names the source.
std::vector<Verse> parse_kjv(const std::string& text, const std::string& origin);

// The names above; kjv_dataset() throws UserError naming them for anything else.
const std::vector<std::string>& builtin_dataset_names();
bool is_builtin_dataset(const std::string& name);
Dataset kjv_dataset(const std::string& name);

}  // namespace secateur::data
