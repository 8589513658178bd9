#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace secateur::strings {

// Levenshtein distance, for "did you mean ...?" suggestions.
size_t edit_distance(std::string_view a, std::string_view b);

// The candidate closest to `word`, or "" when none is close enough to be a plausible typo
// (distance ≤ max(2, |word|/3)).
std::string closest(std::string_view word, const std::vector<std::string>& candidates);

std::string join(const std::vector<std::string>& parts, std::string_view sep);
std::vector<std::string> split(std::string_view text, char sep);
bool starts_with(std::string_view text, std::string_view prefix);
bool ends_with(std::string_view text, std::string_view suffix);

// Human-readable figures: 11234567 → "11.2M"; 95.3 s → "1m35s".
std::string human_count(double n);
std::string human_duration(double seconds);
// Shortest decimal text that round-trips a double ("0.1", "1e-05", "3").
std::string format_number(double value);

}  // namespace secateur::strings
