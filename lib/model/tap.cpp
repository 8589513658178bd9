#include "model/tap.h"

namespace secateur::model {

namespace {
thread_local Tap* g_tap = nullptr;
}

TapScope::TapScope(Tap* tap) : previous_(g_tap) { g_tap = tap; }
TapScope::~TapScope() { g_tap = previous_; }
Tap* current_tap() { return g_tap; }

}  // namespace secateur::model
