#include "util/progress.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>

#include "util/log.h"
#include "util/strings.h"

namespace secateur {
namespace {
std::atomic<bool> g_force_plain{false};
constexpr double kTtyRedrawSeconds = 0.1;
constexpr double kPlainLogSeconds = 10.0;
}  // namespace

void Progress::force_plain(bool plain) { g_force_plain = plain; }

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), start_(Clock::now()),
      last_print_(start_), tty_(!g_force_plain && ::isatty(STDERR_FILENO)) {}

Progress::~Progress() {
  if (!finished_) finish();
}

std::string Progress::render(const std::string& label, int64_t done, int64_t total, double elapsed_s,
                             const std::string& unit, const std::string& status, bool bar) {
  std::string line = label + " ";
  if (bar && total > 0) {
    constexpr int kWidth = 20;
    double fraction = std::min(1.0, static_cast<double>(done) / static_cast<double>(total));
    int eighths = static_cast<int>(fraction * kWidth * 8);
    static const char* partial[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
    std::string cells;
    for (int i = 0; i < eighths / 8; ++i) cells += "█";
    int used = eighths / 8;
    if (used < kWidth) {
      cells += partial[eighths % 8];
      cells += std::string(kWidth - used - (eighths % 8 ? 1 : 0), ' ');
    }
    line += cells + " ";
  }
  line += std::to_string(done);
  if (total > 0) line += "/" + std::to_string(total);
  double rate = elapsed_s > 0 ? static_cast<double>(done) / elapsed_s : 0.0;
  char buf[64];
  std::snprintf(buf, sizeof buf, rate >= 100 ? "  %.0f %s/s" : "  %.2f %s/s", rate, unit.c_str());
  line += buf;
  if (total > 0 && rate > 0 && done < total)
    line += "  eta " + strings::human_duration(static_cast<double>(total - done) / rate);
  else if (done >= total && total > 0)
    line += "  in " + strings::human_duration(elapsed_s);
  if (!status.empty()) line += "  " + status;
  return line;
}

void Progress::update(int64_t done, const std::string& status) {
  done_ = done;
  status_ = status;
  auto now = Clock::now();
  double since_print = std::chrono::duration<double>(now - last_print_).count();
  double elapsed = std::chrono::duration<double>(now - start_).count();
  if (tty_) {
    if (since_print < kTtyRedrawSeconds) return;
    std::fprintf(stderr, "\r\033[K%s", render(label_, done_, total_, elapsed, unit_, status_, true).c_str());
    std::fflush(stderr);
  } else {
    if (since_print < kPlainLogSeconds) return;
    log::info(render(label_, done_, total_, elapsed, unit_, status_, false));
  }
  last_print_ = now;
}

void Progress::finish(const std::string& status) {
  if (finished_) return;
  finished_ = true;
  if (!status.empty()) status_ = status;
  double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  std::string line = render(label_, done_, total_, elapsed, unit_, status_, tty_);
  if (tty_) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }
  log::info(line);
}

}  // namespace secateur
