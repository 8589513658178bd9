#include "util/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <mutex>

namespace secateur::log {
namespace {

std::shared_ptr<spdlog::logger>& logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    sink->set_pattern("%^%L%$ %H:%M:%S %v");
    auto l = std::make_shared<spdlog::logger>("secateur", sink);
    l->set_level(spdlog::level::info);
    l->flush_on(spdlog::level::info);
    return l;
  }();
  return instance;
}

std::mutex sinks_mutex;

spdlog::level::level_enum to_spd(Level level) {
  switch (level) {
    case Level::debug: return spdlog::level::debug;
    case Level::info: return spdlog::level::info;
    case Level::warn: return spdlog::level::warn;
    case Level::error: return spdlog::level::err;
  }
  return spdlog::level::info;
}

}  // namespace

void set_level(Level level) { logger()->set_level(to_spd(level)); }

void add_file_sink(const std::string& path) {
  std::lock_guard<std::mutex> lock(sinks_mutex);
  auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, /*truncate=*/false);
  sink->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
  logger()->sinks().push_back(sink);
}

void remove_file_sinks() {
  std::lock_guard<std::mutex> lock(sinks_mutex);
  auto& sinks = logger()->sinks();
  sinks.erase(sinks.begin() + 1, sinks.end());  // sink 0 is the terminal
}

void write(Level level, const std::string& message) { logger()->log(to_spd(level), message); }

}  // namespace secateur::log
