#include "data/spm_protocol.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>

namespace secateur::data::spm_protocol {

namespace {

// Large enough for any tokenizer request; a bigger length means a corrupt stream.
constexpr size_t kMaxField = size_t(1) << 31;
constexpr size_t kMaxFields = size_t(1) << 24;

size_t parse_size(const std::string& s, size_t limit, const char* what) {
  if (s.empty() || s.size() > 12 || s.find_first_not_of("0123456789") != std::string::npos) {
    throw std::runtime_error(std::string("malformed ") + what + " \"" + s.substr(0, 32) + "\"");
  }
  const size_t v = std::stoull(s);
  if (v > limit) throw std::runtime_error(std::string(what) + " " + s + " is too large");
  return v;
}

}  // namespace

bool Reader::fill() {
  if (pos_ > 0) buffer_.erase(0, pos_), pos_ = 0;
  char chunk[65536];
  for (;;) {
    const ssize_t n = ::read(fd_, chunk, sizeof chunk);
    if (n > 0) {
      buffer_.append(chunk, static_cast<size_t>(n));
      return true;
    }
    if (n == 0) return false;
    if (errno != EINTR) throw std::runtime_error(std::string("read failed: ") + std::strerror(errno));
  }
}

std::string Reader::line() {
  for (;;) {
    const size_t nl = buffer_.find('\n', pos_);
    if (nl != std::string::npos) {
      std::string out = buffer_.substr(pos_, nl - pos_);
      pos_ = nl + 1;
      return out;
    }
    if (buffer_.size() - pos_ > 256) throw std::runtime_error("malformed message header");
    if (!fill()) throw std::runtime_error("stream ended inside a message");
  }
}

bool Reader::read(Message& out) {
  if (pos_ == buffer_.size() && !fill()) return false;
  const std::string header = line();
  const size_t sp = header.find(' ');
  if (sp == std::string::npos) throw std::runtime_error("malformed message header \"" + header.substr(0, 64) + "\"");
  out.word = header.substr(0, sp);
  const size_t count = parse_size(header.substr(sp + 1), kMaxFields, "field count");
  out.fields.assign(count, {});
  for (auto& field : out.fields) {
    const size_t len = parse_size(line(), kMaxField, "field length");
    while (buffer_.size() - pos_ < len) {
      if (!fill()) throw std::runtime_error("stream ended inside a message");
    }
    field = buffer_.substr(pos_, len);
    pos_ += len;
  }
  return true;
}

void write(int fd, const Message& message) {
  std::string out = message.word + " " + std::to_string(message.fields.size()) + "\n";
  for (const auto& f : message.fields) out += std::to_string(f.size()) + "\n" + f;
  size_t done = 0;
  while (done < out.size()) {
    // send() with MSG_NOSIGNAL: a dead peer must give an error here, not kill us with SIGPIPE.
    ssize_t n = ::send(fd, out.data() + done, out.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK) n = ::write(fd, out.data() + done, out.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("write failed: ") + std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
}

std::string join_ids(const std::vector<int>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ' ';
    out += std::to_string(ids[i]);
  }
  return out;
}

std::vector<int> parse_ids(const std::string& text) {
  std::vector<int> ids;
  size_t i = 0;
  while (i < text.size()) {
    const size_t end = std::min(text.find(' ', i), text.size());
    const std::string tok = text.substr(i, end - i);
    const bool negative = !tok.empty() && tok[0] == '-';
    if (tok.size() == size_t(negative) || tok.size() > 11 ||
        tok.find_first_not_of("0123456789", negative ? 1 : 0) != std::string::npos) {
      throw std::runtime_error("malformed id \"" + tok.substr(0, 16) + "\"");
    }
    const long long v = std::stoll(tok);
    if (v < INT32_MIN || v > INT32_MAX) throw std::runtime_error("id " + tok + " out of range");
    ids.push_back(static_cast<int>(v));
    i = end + 1;
  }
  return ids;
}

}  // namespace secateur::data::spm_protocol
