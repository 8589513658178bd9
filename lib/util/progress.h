#pragma once
// Progress of a long loop: a live bar with rate and ETA when stderr is a terminal, and plain
// periodic log lines otherwise (batch jobs, CI), so a log file never fills with redraws.
#include <chrono>
#include <cstdint>
#include <string>

namespace secateur {

class Progress {
 public:
  // `label` is shown first ("[2/6] learn_masks"); total 0 means unknown length.
  Progress(std::string label, int64_t total, std::string unit = "it");
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Advances to `done` and sets the trailing status text ("loss 0.412 sparsity 0.71").
  void update(int64_t done, const std::string& status = "");
  void finish(const std::string& status = "");

  // Text of one progress line; public so that tests can check the format.
  static std::string render(const std::string& label, int64_t done, int64_t total, double elapsed_s,
                            const std::string& unit, const std::string& status, bool bar);

  // Overrides terminal detection (tests, --no-progress).
  static void force_plain(bool plain);

 private:
  using Clock = std::chrono::steady_clock;
  std::string label_, unit_, status_;
  int64_t total_, done_ = 0;
  Clock::time_point start_, last_print_;
  bool tty_, finished_ = false;
};

}  // namespace secateur
