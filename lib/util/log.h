#pragma once
// Logging facade. spdlog/fmt stay inside log.cpp: the PyTorch wheel ships its own fmt headers,
// which clash with Debian's fmt if a torch translation unit also includes spdlog.
#include <string>

namespace secateur::log {

enum class Level { debug, info, warn, error };

// Terminal sink (stderr, coloured on a TTY) is on from the start; add_file_sink() adds log.txt.
void set_level(Level level);
void add_file_sink(const std::string& path);
void remove_file_sinks();
void write(Level level, const std::string& message);

inline void debug(const std::string& m) { write(Level::debug, m); }
inline void info(const std::string& m) { write(Level::info, m); }
inline void warn(const std::string& m) { write(Level::warn, m); }
inline void error(const std::string& m) { write(Level::error, m); }

}  // namespace secateur::log
