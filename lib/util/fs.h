#pragma once
// Crash-safe file writes: finished work is never lost or half-written.
#include <string>
#include <string_view>
#include <vector>

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

// File-system queries and edits in plain POSIX. Code that links LibTorch must not call
// std::filesystem: the PyTorch wheel's libtorch.so exports its own statically linked copies of
// libstdc++'s std::filesystem functions (pytorch/pytorch#133437); a program built with a newer
// g++ binds to them at run time and crashes (seen with torch 2.11: remove_all, temp paths).
bool exists(const std::string& path);
bool is_directory(const std::string& path);
bool is_regular_file(const std::string& path);
bool is_empty_directory(const std::string& path);     // false when missing or not a directory
void create_directories(const std::string& path);     // like mkdir -p; UserError on failure
void remove_all(const std::string& path);             // like rm -rf; missing is fine
std::vector<std::string> list_directory(const std::string& path);  // entry names, sorted
void copy_file(const std::string& from, const std::string& to);    // atomic at `to`
std::string temp_directory();                          // $TMPDIR or /tmp

// Path text helpers (no file-system access).
std::string join(const std::string& a, const std::string& b);  // "a/b"; b absolute → b
std::string parent_path(const std::string& path);               // "a/b/c" → "a/b"; "c" → ""
std::string file_name(const std::string& path);                 // "a/b/c.yaml" → "c.yaml"
std::string stem(const std::string& path);                      // "a/b/c.yaml" → "c"
bool is_absolute(const std::string& path);
std::string absolute(const std::string& path);                  // cwd-joined, lexically normalised
std::string normalize(const std::string& path);                 // removes ".", "x/..", "//"

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
