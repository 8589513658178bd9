#pragma once
// Crash-safe file writes: finished work is never lost or half-written.
#include <string>
#include <string_view>

namespace secateur::fs {

// Writes `content` to `path` atomically: a temp file in the same directory, fsync, rename over
// `path`, then fsync of the directory. A crash at any moment leaves either the old or the new
// file, never a torn one. Throws UserError naming the path on any failure (disk full, no
// permission), leaving the old file untouched.
void write_atomic(const std::string& path, std::string_view content);

// Same, for writers that produce the content themselves: `fill` gets the temp file's path and
// must write it completely; the rename happens only if it returns normally.
template <class Fill>
void write_atomic_with(const std::string& path, Fill&& fill);

// Appends one line (a '\n' is added) and fsyncs; used for metrics.jsonl, where each line is a
// complete event and a partial last line after a crash is tolerated by readers.
void append_line(const std::string& path, std::string_view line);

std::string read_file(const std::string& path);  // UserError if missing / a directory / unreadable

// Internal helpers for write_atomic_with.
std::string temp_path_for(const std::string& path);
void commit_temp(const std::string& temp, const std::string& path);
void discard_temp(const std::string& temp) noexcept;

template <class Fill>
void write_atomic_with(const std::string& path, Fill&& fill) {
  const std::string temp = temp_path_for(path);
  try {
    fill(temp);
  } catch (...) {
    discard_temp(temp);
    throw;
  }
  commit_temp(temp, path);
}

}  // namespace secateur::fs
