// secateur-spm: the SentencePiece companion process. It links libsentencepiece and nothing from
// secateur or torch, and serves lib/data over stdin/stdout (spm_protocol.h).
//
// Why a separate process: Debian's libsentencepiece.so.0 carries its own copy of protobuf-lite
// 3.14 and exports those symbols, while LibTorch links the system protobuf 3.21. A binary that
// loads both breaks in protobuf's static initialisers, before main(). Keeping sentencepiece in
// its own executable avoids the clash for good, on every build (ASan included, where the
// dlopen(RTLD_DEEPBIND) alternative does not work), at the cost of one pipe round trip per call.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "data/spm_protocol.h"

namespace proto = secateur::data::spm_protocol;

namespace {

// Feeds the trainer the lines of several files, so that paths with commas (which the trainer's
// own comma-separated `input` flag cannot express) work.
class FileLines : public sentencepiece::SentenceIterator {
 public:
  explicit FileLines(std::vector<std::string> files) : files_(std::move(files)) { Next(); }
  bool done() const override { return done_; }
  void Next() override {
    for (;;) {
      if (in_.is_open() && std::getline(in_, line_)) return;
      if (in_.is_open() && in_.bad()) {
        status_ = sentencepiece::util::Status(sentencepiece::util::StatusCode::kInternal,
                                              "cannot read " + files_[index_ - 1]);
        done_ = true;
        return;
      }
      in_.close();
      if (index_ == files_.size()) {
        done_ = true;
        return;
      }
      in_.clear();
      in_.open(files_[index_++], std::ios::binary);
      if (!in_) {
        status_ = sentencepiece::util::Status(sentencepiece::util::StatusCode::kNotFound,
                                              "cannot open " + files_[index_ - 1]);
        done_ = true;
        return;
      }
    }
  }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return status_; }

 private:
  std::vector<std::string> files_;
  size_t index_ = 0;
  std::ifstream in_;
  std::string line_;
  bool done_ = false;
  sentencepiece::util::Status status_;
};

proto::Message error(const std::string& what) { return {"error", {what}}; }

char piece_type(const sentencepiece::SentencePieceProcessor& sp, int id) {
  if (sp.IsUnknown(id)) return 'U';
  if (sp.IsControl(id)) return 'C';
  if (sp.IsByte(id)) return 'B';
  if (sp.IsUnused(id)) return 'X';
  return 'N';
}

proto::Message handle(const proto::Message& req, std::unique_ptr<sentencepiece::SentencePieceProcessor>& sp) {
  if (req.word == "load" && req.fields.size() == 1) {
    auto fresh = std::make_unique<sentencepiece::SentencePieceProcessor>();
    const auto status = fresh->Load(req.fields[0]);
    if (!status.ok()) return error(std::string(status.message()));
    sp = std::move(fresh);
    const int n = sp->GetPieceSize();
    proto::Message reply{"ok", {std::to_string(n), std::to_string(sp->unk_id()), std::to_string(sp->bos_id()),
                                std::to_string(sp->eos_id()), std::to_string(sp->pad_id()), std::string()}};
    for (int id = 0; id < n; ++id) {
      reply.fields[5] += piece_type(*sp, id);
      reply.fields.push_back(sp->IdToPiece(id));
    }
    return reply;
  }
  if ((req.word == "encode" || req.word == "decode") && req.fields.size() == 1) {
    if (!sp) return error("no model loaded");
    if (req.word == "encode") {
      std::vector<int> ids;
      const auto status = sp->Encode(req.fields[0], &ids);
      if (!status.ok()) return error(std::string(status.message()));
      return {"ok", {proto::join_ids(ids)}};
    }
    std::string text;
    const auto status = sp->Decode(proto::parse_ids(req.fields[0]), &text);
    if (!status.ok()) return error(std::string(status.message()));
    return {"ok", {text}};
  }
  if (req.word == "train" && !req.fields.empty()) {
    const size_t n = std::stoul(req.fields[0]);
    if (req.fields.size() < 1 + n || (req.fields.size() - 1 - n) % 2 != 0) return error("malformed train request");
    std::vector<std::string> files(req.fields.begin() + 1, req.fields.begin() + 1 + static_cast<long>(n));
    std::unordered_map<std::string, std::string> kwargs;
    for (size_t i = 1 + n; i + 1 < req.fields.size(); i += 2) kwargs[req.fields[i]] = req.fields[i + 1];
    FileLines lines(std::move(files));
    const auto status = sentencepiece::SentencePieceTrainer::Train(kwargs, &lines);
    if (!status.ok()) return error(std::string(status.message()));
    return {"ok", {}};
  }
  return error("unknown request '" + req.word + "' with " + std::to_string(req.fields.size()) + " fields");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--version") {
    std::printf("secateur-spm (sentencepiece companion of secateur)\n");
    return 0;
  }
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp;
  proto::Reader reader(0);
  proto::Message req;
  try {
    while (reader.read(req)) {
      proto::Message reply;
      try {
        reply = handle(req, sp);
      } catch (const std::exception& e) {
        reply = error(e.what());
      }
      proto::write(1, reply);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "secateur-spm: %s\n", e.what());
    return 1;
  }
  return 0;
}
