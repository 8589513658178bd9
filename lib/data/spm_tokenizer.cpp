// SentencePiece tokenizers and training, served by the secateur-spm companion process (see
// spm_tool/main.cpp for why sentencepiece must stay out of any binary that links torch).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "data/loaders.h"
#include "data/spm_protocol.h"
#include "data/unicode.h"
#include "util/error.h"
#include "util/fs.h"

extern char** environ;

namespace secateur::data {

namespace {

namespace proto = spm_protocol;

constexpr const char* kToolName = "secateur-spm";

bool executable(const std::string& path) {
  return !path.empty() && ::access(path.c_str(), X_OK) == 0 && !fs::is_directory(path);
}

// The companion: $SECATEUR_SPM_TOOL, else next to the running executable (installed layouts,
// build/bin), else where this build put it. Paths go through secateur::fs and POSIX, not
// std::filesystem (see util/fs.h on the torch wheel's copies of it).
std::string locate_tool() {
  if (const char* env = std::getenv("SECATEUR_SPM_TOOL"); env != nullptr && *env != '\0') {
    if (!executable(env)) throw UserError(std::string("SECATEUR_SPM_TOOL=") + env + ": not an executable file");
    return env;
  }
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  const std::string beside = n > 0 ? fs::join(fs::parent_path(std::string(self, static_cast<size_t>(n))), kToolName)
                                   : std::string();
  if (executable(beside)) return beside;
#ifdef SECATEUR_SPM_TOOL_BUILD_PATH
  if (executable(SECATEUR_SPM_TOOL_BUILD_PATH)) return SECATEUR_SPM_TOOL_BUILD_PATH;
  const std::string built = SECATEUR_SPM_TOOL_BUILD_PATH;
#else
  const std::string built = "(none)";
#endif
  throw UserError(std::string("cannot find the SentencePiece companion ") + kToolName + " (looked in $SECATEUR_SPM_TOOL, " +
                  (beside.empty() ? std::string("beside the executable") : beside) + ", " + built +
                  "); build the secateur_spm target or set SECATEUR_SPM_TOOL");
}

// One long-lived secateur-spm child, spoken to over a socket pair (a two-way pipe on which
// send(MSG_NOSIGNAL) turns a dead child into an error rather than a SIGPIPE). Calls are
// serialised by a mutex, so one tokenizer can be shared by threads.
class SpmProcess {
 public:
  SpmProcess() : tool_(locate_tool()) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      throw UserError(std::string("cannot create a socket pair for ") + kToolName + ": " + std::strerror(errno));
    }
    // The child's stderr goes to an unlinked temp file, read back only to explain a failure.
    std::string tmpl = fs::join(fs::temp_directory(), "secateur-spm-XXXXXX");
    stderr_fd_ = ::mkostemp(tmpl.data(), O_CLOEXEC);
    if (stderr_fd_ >= 0) ::unlink(tmpl.c_str());
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, sv[1], 0);
    posix_spawn_file_actions_adddup2(&actions, sv[1], 1);
    if (stderr_fd_ >= 0) posix_spawn_file_actions_adddup2(&actions, stderr_fd_, 2);
    // posix_spawn rather than fork(): it is safe in a process with many threads (torch's pools)
    // and never duplicates a large address space; no shell is involved.
    char* argv[] = {const_cast<char*>(tool_.c_str()), nullptr};
    const int rc = ::posix_spawn(&pid_, tool_.c_str(), &actions, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(sv[1]);
    if (rc != 0) {
      ::close(sv[0]);
      if (stderr_fd_ >= 0) ::close(stderr_fd_);
      throw UserError("cannot start " + tool_ + ": " + std::strerror(rc));
    }
    fd_ = sv[0];
    reader_ = std::make_unique<proto::Reader>(fd_);
  }

  ~SpmProcess() {
    ::shutdown(fd_, SHUT_RDWR);  // the child sees end of input and exits
    ::close(fd_);
    // Give the child two seconds to exit on its own; never leave a zombie or a stray process.
    int status = 0;
    bool gone = reaped_;
    for (int i = 0; i < 200 && !gone; ++i) {
      gone = ::waitpid(pid_, &status, WNOHANG) != 0;
      if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!gone) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
    close_stderr();
  }

  SpmProcess(const SpmProcess&) = delete;
  SpmProcess& operator=(const SpmProcess&) = delete;

  // Sends one request and returns the reply's fields. `context` starts every error message
  // (the model file, or the training output).
  std::vector<std::string> call(const std::string& word, std::vector<std::string> fields, const std::string& context) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!dead_.empty()) throw UserError(context + ": " + dead_);
    proto::Message reply;
    try {
      proto::write(fd_, {word, std::move(fields)});
      if (!reader_->read(reply)) throw std::runtime_error("no reply");
    } catch (const std::runtime_error& e) {
      dead_ = died(word, e.what());
      throw UserError(context + ": " + dead_);
    }
    if (reply.word == "error") throw UserError(context + ": " + (reply.fields.empty() ? "failed" : reply.fields[0]));
    if (reply.word != "ok") throw UserError(context + ": unexpected reply '" + reply.word + "' from " + tool_);
    return std::move(reply.fields);
  }

 private:
  std::string died(const std::string& word, const std::string& io_error) {
    int status = 0;
    std::string how = "stopped answering (" + io_error + ")";
    if (::waitpid(pid_, &status, 0) == pid_) {
      reaped_ = true;
      if (WIFSIGNALED(status)) how = "was killed by signal " + std::to_string(WTERMSIG(status));
      if (WIFEXITED(status)) how = "exited with status " + std::to_string(WEXITSTATUS(status));
    }
    std::string message = tool_ + " " + how + " during '" + word + "'";
    if (stderr_fd_ >= 0) {
      const off_t size = ::lseek(stderr_fd_, 0, SEEK_END);
      const off_t from = size > 2000 ? size - 2000 : 0;
      std::string tail(static_cast<size_t>(size - from), '\0');
      const ssize_t n = ::pread(stderr_fd_, tail.data(), tail.size(), from);
      tail.resize(n > 0 ? static_cast<size_t>(n) : 0);
      while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
      if (!tail.empty()) message += "; its last output: " + tail;
    }
    return message;
  }

  void close_stderr() {
    if (stderr_fd_ >= 0) ::close(stderr_fd_), stderr_fd_ = -1;
  }

  std::string tool_;
  pid_t pid_ = -1;
  int fd_ = -1, stderr_fd_ = -1;
  bool reaped_ = false;
  std::string dead_;  // why the child is gone, once it is
  std::unique_ptr<proto::Reader> reader_;
  std::mutex mutex_;
};

int to_int(const std::string& s, const std::string& context) {
  const auto ids = proto::parse_ids(s);
  if (ids.size() != 1) throw UserError(context + ": malformed reply from " + kToolName);
  return ids[0];
}

class SpmTokenizer final : public Tokenizer {
 public:
  explicit SpmTokenizer(const std::string& path) : path_(path) {
    // Read before starting the child: a missing file gets the usual message, and the bytes key
    // the fingerprint.
    const std::string bytes = fs::read_file(path);
    fingerprint_ = "spm-" + sha256_hex("secateur sentencepiece v1\n" + bytes);
    process_ = std::make_unique<SpmProcess>();
    std::vector<std::string> info;
    try {
      info = process_->call("load", {path}, path);
    } catch (const UserError& e) {
      throw UserError(std::string(e.what()) + " (expected a SentencePiece .model file)");
    }
    try {
      size_ = to_int(info.at(0), path);
      const int unk = to_int(info.at(1), path), bos = to_int(info.at(2), path), eos = to_int(info.at(3), path),
                pad = to_int(info.at(4), path);
      types_ = info.at(5);
      if (size_ < 0 || types_.size() != static_cast<size_t>(size_) || info.size() != 6 + types_.size()) {
        throw std::out_of_range("vocab");
      }
      pieces_.assign(info.begin() + 6, info.end());
      const auto valid = [this](int id) { return id >= 0 && id < size_ ? std::optional<int32_t>(id) : std::nullopt; };
      special.unk = valid(unk), special.bos = valid(bos), special.eos = valid(eos), special.pad = valid(pad);
    } catch (const std::out_of_range&) {
      throw UserError(path + ": malformed vocabulary reply from " + kToolName);
    }
    for (int id = 0; id < size_; ++id) by_piece_.emplace(pieces_[id], id);
  }

  std::vector<int32_t> encode(const std::string& text, bool add_special_tokens) const override {
    const auto reply = process_->call("encode", {unicode::sanitize(text)}, path_);
    std::vector<int32_t> ids;
    if (add_special_tokens && special.bos) ids.push_back(*special.bos);
    for (int id : proto::parse_ids(reply.at(0))) ids.push_back(id);
    return ids;
  }

  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const override {
    // sentencepiece drops control pieces (<s>, </s>, <pad>) when decoding; to keep them, decode
    // the runs between them and put their text back in place.
    std::string out;
    std::vector<int> run;
    const auto flush = [&] {
      if (!run.empty()) out += process_->call("decode", {proto::join_ids(run)}, path_).at(0);
      run.clear();
    };
    for (int32_t id : ids) {
      if (id < 0 || id >= size_) continue;
      if (types_[id] == 'C') {
        if (skip_special_tokens) continue;
        flush();
        out += pieces_[id];
      } else {
        run.push_back(id);
      }
    }
    flush();
    return out;
  }

  int64_t vocab_size() const override { return size_; }

  std::optional<int32_t> token_to_id(const std::string& token) const override {
    const auto it = by_piece_.find(token);
    if (it == by_piece_.end()) return std::nullopt;
    return it->second;
  }

  std::string fingerprint() const override { return fingerprint_; }

 private:
  std::string path_;
  std::unique_ptr<SpmProcess> process_;  // its calls are serialised by the process's own mutex
  std::string fingerprint_;
  int size_ = 0;
  std::string types_;  // one letter per id: N normal, U unknown, C control, B byte, X unused
  std::vector<std::string> pieces_;
  std::unordered_map<std::string, int32_t> by_piece_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_spm_tokenizer(const std::string& path) { return std::make_unique<SpmTokenizer>(path); }

std::string train_sentencepiece(const std::vector<std::string>& text_files, const std::string& out_prefix,
                                int vocab_size, const std::string& model_type,
                                const std::map<std::string, std::string>& options) {
  const std::string context = "train_sentencepiece(" + out_prefix + ")";
  if (text_files.empty()) throw UserError(context + ": no training text files given");
  for (const auto& f : text_files) {
    if (!fs::is_regular_file(f)) throw UserError(f + ": no such file (a training text for " + context + ")");
  }
  if (vocab_size <= 0) throw UserError(context + ": vocab_size must be positive, got " + std::to_string(vocab_size));
  if (model_type != "unigram" && model_type != "bpe" && model_type != "char" && model_type != "word") {
    throw UserError(context + ": unknown model_type '" + model_type + "' (expected unigram, bpe, char or word)");
  }
  const std::string parent = fs::parent_path(out_prefix);
  if (!parent.empty() && !fs::is_directory(parent)) {
    throw UserError(context + ": output directory " + parent + " does not exist");
  }
  std::vector<std::string> fields{std::to_string(text_files.size())};
  fields.insert(fields.end(), text_files.begin(), text_files.end());
  std::map<std::string, std::string> kwargs{{"minloglevel", "1"}};  // quiet unless asked otherwise
  for (const auto& [key, value] : options) {
    if (key == "input" || key == "model_prefix" || key == "vocab_size" || key == "model_type") {
      throw UserError(context + ": option '" + key + "' is set by train_sentencepiece's own arguments");
    }
    kwargs[key] = value;
  }
  kwargs["model_prefix"] = out_prefix;
  kwargs["vocab_size"] = std::to_string(vocab_size);
  kwargs["model_type"] = model_type;
  for (const auto& [key, value] : kwargs) fields.push_back(key), fields.push_back(value);
  SpmProcess process;
  process.call("train", std::move(fields), context);
  const std::string model = out_prefix + ".model";
  if (!fs::is_regular_file(model)) throw UserError(context + ": training reported success but wrote no " + model);
  return model;
}

}  // namespace secateur::data
