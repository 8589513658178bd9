#pragma once
// Internal: the wire format between lib/data and the secateur-spm companion process. A message is
// a line "<word> <count>\n" followed by <count> fields, each "<byte length>\n<bytes>", so any text
// (newlines, NULs, invalid UTF-8) passes unchanged. Requests: load <path>; encode <text>;
// decode <ids>; train <n> <files...> <key> <value>...; replies: ok <fields...> or error <message>.
// POSIX only, no other dependency: the companion links this file and sentencepiece, nothing else.
#include <string>
#include <vector>

namespace secateur::data::spm_protocol {

struct Message {
  std::string word;
  std::vector<std::string> fields;
};

// Buffered reader over a file descriptor.
class Reader {
 public:
  explicit Reader(int fd) : fd_(fd) {}
  // False on a clean end of stream before a message starts; throws std::runtime_error on a
  // truncated or malformed message or a read error.
  bool read(Message& out);

 private:
  bool fill();
  std::string line();
  int fd_;
  std::string buffer_;
  size_t pos_ = 0;
};

// Throws std::runtime_error when the peer is gone (never raises SIGPIPE).
void write(int fd, const Message& message);

std::string join_ids(const std::vector<int>& ids);
// Throws std::runtime_error on anything but space-separated decimal integers.
std::vector<int> parse_ids(const std::string& text);

}  // namespace secateur::data::spm_protocol
