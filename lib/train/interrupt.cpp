// SIGINT / SIGTERM (Ctrl-C, SLURM preemption): the handler only sets a flag; the trainer saves a
// checkpoint at the next step boundary. A second signal restores the default action and
// re-raises it, so a run stuck outside the loop still dies.
#include <atomic>
#include <csignal>

#include "train/trainer.h"

namespace secateur::train {

namespace {

volatile std::sig_atomic_t g_interrupted = 0;
std::atomic<bool> g_installed{false};
struct sigaction g_old_int {}, g_old_term {};

extern "C" void on_interrupt_signal(int sig) {
  if (g_interrupted) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  g_interrupted = 1;
}

}  // namespace

void install_interrupt_handlers() {
  if (g_installed.exchange(true)) return;
  struct sigaction action {};
  action.sa_handler = on_interrupt_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;
  sigaction(SIGINT, &action, &g_old_int);
  sigaction(SIGTERM, &action, &g_old_term);
}

void restore_interrupt_handlers() {
  if (!g_installed.exchange(false)) return;
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
}

bool interrupt_requested() { return g_interrupted != 0; }
void request_interrupt() { g_interrupted = 1; }
void clear_interrupt() { g_interrupted = 0; }

}  // namespace secateur::train
