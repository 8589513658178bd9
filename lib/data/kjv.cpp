#include "data/kjv.h"

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "util/error.h"
#include "util/strings.h"

namespace secateur::data {

const std::vector<Book>& kjv_books() {
  static const std::vector<Book> books = {
      {"Genesis", "Ge", false, "law"}, {"Exodus", "Exo", false, "law"}, {"Leviticus", "Lev", false, "law"},
      {"Numbers", "Num", false, "law"}, {"Deuteronomy", "Deu", false, "law"}, {"Joshua", "Josh", false, "history"},
      {"Judges", "Jdgs", false, "history"}, {"Ruth", "Ruth", false, "history"}, {"1 Samuel", "1Sm", false, "history"},
      {"2 Samuel", "2Sm", false, "history"}, {"1 Kings", "1Ki", false, "history"}, {"2 Kings", "2Ki", false, "history"},
      {"1 Chronicles", "1Chr", false, "history"}, {"2 Chronicles", "2Chr", false, "history"},
      {"Ezra", "Ezra", false, "history"}, {"Nehemiah", "Neh", false, "history"}, {"Esther", "Est", false, "history"},
      {"Job", "Job", false, "wisdom"}, {"Psalms", "Psa", false, "wisdom"}, {"Proverbs", "Prv", false, "wisdom"},
      {"Ecclesiastes", "Eccl", false, "wisdom"}, {"Song of Solomon", "SSol", false, "wisdom"},
      {"Isaiah", "Isa", false, "prophets"}, {"Jeremiah", "Jer", false, "prophets"},
      {"Lamentations", "Lam", false, "prophets"}, {"Ezekiel", "Eze", false, "prophets"}, {"Daniel", "Dan", false, "prophets"},
      {"Hosea", "Hos", false, "prophets"}, {"Joel", "Joel", false, "prophets"}, {"Amos", "Amos", false, "prophets"},
      {"Obadiah", "Obad", false, "prophets"}, {"Jonah", "Jonah", false, "prophets"}, {"Micah", "Mic", false, "prophets"},
      {"Nahum", "Nahum", false, "prophets"}, {"Habakkuk", "Hab", false, "prophets"},
      {"Zephaniah", "Zep", false, "prophets"}, {"Haggai", "Hag", false, "prophets"},
      {"Zechariah", "Zec", false, "prophets"}, {"Malachi", "Mal", false, "prophets"},
      {"Matthew", "Mat", true, "gospels"}, {"Mark", "Mark", true, "gospels"}, {"Luke", "Luke", true, "gospels"},
      {"John", "John", true, "gospels"}, {"Acts", "Acts", true, "history"}, {"Romans", "Rom", true, "epistles"},
      {"1 Corinthians", "1Cor", true, "epistles"}, {"2 Corinthians", "2Cor", true, "epistles"},
      {"Galatians", "Gal", true, "epistles"}, {"Ephesians", "Eph", true, "epistles"},
      {"Philippians", "Phi", true, "epistles"}, {"Colossians", "Col", true, "epistles"},
      {"1 Thessalonians", "1Th", true, "epistles"}, {"2 Thessalonians", "2Th", true, "epistles"},
      {"1 Timothy", "1Tim", true, "epistles"}, {"2 Timothy", "2Tim", true, "epistles"}, {"Titus", "Titus", true, "epistles"},
      {"Philemon", "Phmn", true, "epistles"}, {"Hebrews", "Heb", true, "epistles"}, {"James", "Jas", true, "epistles"},
      {"1 Peter", "1Pet", true, "epistles"}, {"2 Peter", "2Pet", true, "epistles"}, {"1 John", "1Jn", true, "epistles"},
      {"2 John", "2Jn", true, "epistles"}, {"3 John", "3Jn", true, "epistles"}, {"Jude", "Jude", true, "epistles"},
      // Revelation is prophecy (apocalyptic), grouped with the prophets.
      {"Revelation", "Rev", true, "prophets"}};
  return books;
}

std::string Verse::reference() const {
  return std::string(kjv_books()[static_cast<size_t>(book)].name) + " " + std::to_string(chapter) + ":" + std::to_string(verse);
}

namespace {

constexpr size_t kVerses = 31102;
const char* kPackages = "Debian's bible-kjv and bible-kjv-text packages (scripts/install-deps.sh installs them)";

std::string clean(const std::string& text) {
  // The source has double spaces after some sentences; one space keeps tokenization uniform.
  std::string out;
  bool space = false;
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == '\r') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

bool parse_int(const std::string& s, size_t& pos, int& value) {
  const size_t begin = pos;
  value = 0;
  while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9' && pos - begin < 4) value = value * 10 + (s[pos++] - '0');
  return pos > begin;
}

}  // namespace

std::vector<Verse> parse_kjv(const std::string& text, const std::string& origin) {
  const auto& books = kjv_books();
  std::vector<Verse> verses;
  verses.reserve(kVerses);
  size_t book = 0;
  int line_no = 0;
  for (const auto& raw : strings::split(text, '\n')) {
    ++line_no;
    if (raw.empty()) continue;
    auto fail = [&](const std::string& why) {
      throw UserError(origin + ": line " + std::to_string(line_no) + ": " + why + " (line: \"" + raw.substr(0, 60) + "\")");
    };
    // "<abbrev><chapter>:<verse> <text>"; abbreviations may start with a digit ("1Sm").
    size_t pos = raw[0] >= '0' && raw[0] <= '9' ? 1 : 0;
    while (pos < raw.size() && ((raw[pos] >= 'A' && raw[pos] <= 'Z') || (raw[pos] >= 'a' && raw[pos] <= 'z'))) ++pos;
    const std::string abbrev = raw.substr(0, pos);
    Verse v;
    if (!parse_int(raw, pos, v.chapter) || pos >= raw.size() || raw[pos++] != ':' || !parse_int(raw, pos, v.verse) ||
        pos >= raw.size() || raw[pos] != ' ')
      fail("expected \"<book><chapter>:<verse> <text>\"");
    // Books arrive in canonical order: the current one, or the next.
    if (abbrev != books[book].abbrev) {
      if (book + 1 < books.size() && abbrev == books[book + 1].abbrev && !verses.empty())
        ++book;
      else
        fail("expected book " + std::string(books[book].abbrev) +
             (book + 1 < books.size() ? " or " + std::string(books[book + 1].abbrev) : "") + ", got '" + abbrev + "'");
    }
    v.book = static_cast<int>(book);
    v.text = clean(raw.substr(pos + 1));
    if (v.text.empty()) fail("empty verse");
    verses.push_back(std::move(v));
  }
  if (verses.size() != kVerses || book + 1 != books.size())
    throw UserError(origin + ": expected the " + std::to_string(kVerses) + " verses of all 66 books, got " +
                    std::to_string(verses.size()) + " verses ending in " + books[book].name);
  return verses;
}

std::vector<Verse> read_kjv(const std::string& program) {
  // -f: one verse per line with its reference, whatever the terminal width; -m: enough buffer
  // memory (KiB) to decode the whole text without re-reading it.
  const std::string command = program + " -f -m 8192 gen1:1-rev22:21 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) throw UserError("built-in corpus kjv: cannot start '" + program + "' (needs " + kPackages + ")");
  std::string out;
  std::array<char, 65536> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int status = ::pclose(pipe);
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == 127) throw UserError("built-in corpus kjv needs the program '" + program + "' from " + kPackages);
  if (code != 0)
    throw UserError("built-in corpus kjv: '" + command + "' failed (exit " + std::to_string(code) + "): " +
                    out.substr(0, 200) + " — is " + std::string(kPackages) + " installed?");
  return parse_kjv(out, "output of '" + program + " -f'");
}

const std::vector<Verse>& kjv_verses() {
  // Decoded once per process (about 0.1 s); a failure is not remembered, so a later call retries.
  static std::mutex mutex;
  static std::vector<Verse> verses;
  std::lock_guard<std::mutex> lock(mutex);
  if (verses.empty()) {
    const char* env = std::getenv("SECATEUR_BIBLE");
    verses = read_kjv(env && *env ? env : "bible");
  }
  return verses;
}

const std::vector<std::string>& builtin_dataset_names() {
  static const std::vector<std::string> names = {"kjv", "kjv_testament", "kjv_genre", "kjv_books"};
  return names;
}

bool is_builtin_dataset(const std::string& name) {
  for (const auto& n : builtin_dataset_names())
    if (n == name) return true;
  return false;
}

Dataset kjv_dataset(const std::string& name) {
  if (!is_builtin_dataset(name)) {
    const std::string guess = strings::closest(name, builtin_dataset_names());
    throw UserError("unknown built-in dataset '" + name + "'" + (guess.empty() ? "" : " — did you mean '" + guess + "'?") +
                    " (built-ins: " + strings::join(builtin_dataset_names(), ", ") + ")");
  }
  const auto& books = kjv_books();
  const auto& verses = kjv_verses();
  Dataset d;
  d.name = name;
  d.task = name == "kjv" ? TaskKind::language_modeling : TaskKind::classification;
  std::vector<std::string> genres = {"law", "history", "wisdom", "prophets", "gospels", "epistles"};
  if (name == "kjv_testament") d.label_names = {"old", "new"};
  if (name == "kjv_genre") d.label_names = genres;
  if (name == "kjv_books")
    for (const auto& b : books) d.label_names.push_back(b.name);
  d.examples.reserve(verses.size());
  d.fixed_split.reserve(verses.size());
  int chapter_index = -1, last_book = -1, last_chapter = -1;
  for (const auto& v : verses) {
    if (v.book != last_book || v.chapter != last_chapter) ++chapter_index;
    last_book = v.book;
    last_chapter = v.chapter;
    const int slot = chapter_index % 20;
    d.fixed_split.push_back(slot == 18 ? Split::validation : slot == 19 ? Split::test : Split::train);
    Example e;
    e.text = v.text;
    e.source = std::string(books[static_cast<size_t>(v.book)].abbrev) + std::to_string(v.chapter) + ":" + std::to_string(v.verse);
    const Book& b = books[static_cast<size_t>(v.book)];
    if (name == "kjv_testament") e.label = b.new_testament ? 1 : 0;
    if (name == "kjv_books") e.label = v.book;
    if (name == "kjv_genre")
      for (size_t g = 0; g < genres.size(); ++g)
        if (genres[g] == b.genre) e.label = static_cast<int32_t>(g);
    d.examples.push_back(std::move(e));
  }
  return d;
}

}  // namespace secateur::data
