#include "data/token_cache.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <thread>

#include "data/loaders.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/progress.h"

namespace secateur::data {

int32_t TokenizedDataset::max_id() const {
  return ids.empty() ? -1 : *std::max_element(ids.begin(), ids.end());
}

std::string to_string(CacheStatus status) {
  switch (status) {
    case CacheStatus::disabled: return "disabled";
    case CacheStatus::hit: return "hit";
    case CacheStatus::miss: return "miss";
    case CacheStatus::rebuilt: return "rebuilt";
  }
  return "?";
}

namespace {

// Layout: magic line, key line, then native-endian binary: u32 byte-order mark, u64 examples,
// u64 ids, u64 has-types, i64 offsets[examples + 1], i32 ids[ids], i32 type ids[ids if has-types];
// last, 64 hex digits of SHA-256 over everything before them. A file from a host of the other
// byte order fails the mark and is rebuilt.
const std::string kMagic = "SECATEUR TOKENS 1\n";
constexpr uint32_t kByteOrderMark = 0x01020304;
constexpr size_t kDigest = 64;

template <class T>
void put(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
template <class T>
void put_array(std::string& out, const std::vector<T>& v) {
  out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

struct Cursor {
  const std::string& bytes;
  size_t pos;
  size_t end;
  template <class T>
  bool get(T& v) {
    if (end - pos < sizeof v) return false;
    std::memcpy(&v, bytes.data() + pos, sizeof v);
    pos += sizeof v;
    return true;
  }
  template <class T>
  bool get_array(std::vector<T>& v, uint64_t n) {
    if (n > (end - pos) / sizeof(T)) return false;
    v.resize(n);
    std::memcpy(v.data(), bytes.data() + pos, n * sizeof(T));
    pos += n * sizeof(T);
    return true;
  }
};

std::string cache_key(const Dataset& dataset, const Tokenizer& tokenizer) {
  return "tokenizer=" + tokenizer.fingerprint() + " data=" + dataset.content_hash() + " mode=" + to_string(dataset.task) +
         (dataset.has_pairs ? "+pairs" : "");
}

TokenizedDataset encode_all(const Dataset& dataset, const Tokenizer& tokenizer, int threads) {
  const size_t n = dataset.examples.size();
  std::vector<Encoding> encoded(n);
  if (threads <= 0) threads = static_cast<int>(std::min(8u, std::max(1u, std::thread::hardware_concurrency())));
  threads = static_cast<int>(std::min<size_t>(static_cast<size_t>(threads), std::max<size_t>(1, n / 256)));
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  // Threads take chunks in order until none are left; returns how many examples it encoded.
  auto work = [&](const std::function<void(size_t)>& after_chunk) {
    try {
      constexpr size_t kChunk = 256;
      for (size_t begin; !failed && (begin = next.fetch_add(kChunk)) < n;) {
        const size_t end = std::min(n, begin + kChunk);
        for (size_t i = begin; i < end; ++i) {
          const Example& e = dataset.examples[i];
          if (dataset.has_pairs) encoded[i] = tokenizer.encode_pair(e.text, e.text_pair);
          else encoded[i].ids = tokenizer.encode(e.text, true);
        }
        after_chunk(end);
      }
    } catch (...) {
      if (!failed.exchange(true)) error = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work, [](size_t) {});
  {
    // The calling thread works too and is the only one to touch the (not thread-safe) Progress.
    Progress progress("tokenize " + dataset.name, static_cast<int64_t>(n), "ex");
    work([&](size_t end) { progress.update(static_cast<int64_t>(end)); });
    for (auto& t : pool) t.join();
    if (error) std::rethrow_exception(error);
    progress.finish();
  }
  TokenizedDataset out;
  out.offsets.reserve(n + 1);
  bool any_type = false;
  for (const auto& e : encoded) {
    out.ids.insert(out.ids.end(), e.ids.begin(), e.ids.end());
    out.offsets.push_back(static_cast<int64_t>(out.ids.size()));
    any_type = any_type || std::any_of(e.type_ids.begin(), e.type_ids.end(), [](int32_t t) { return t != 0; });
  }
  if (any_type) {
    out.type_ids.reserve(out.ids.size());
    for (const auto& e : encoded) {
      if (e.type_ids.size() == e.ids.size()) out.type_ids.insert(out.type_ids.end(), e.type_ids.begin(), e.type_ids.end());
      else out.type_ids.insert(out.type_ids.end(), e.ids.size(), 0);
    }
  }
  return out;
}

}  // namespace

std::string serialize_tokens(const TokenizedDataset& t, const std::string& key) {
  std::string out = kMagic + key + "\n";
  put(out, kByteOrderMark);
  put(out, static_cast<uint64_t>(t.size()));
  put(out, static_cast<uint64_t>(t.ids.size()));
  put(out, static_cast<uint64_t>(t.type_ids.empty() ? 0 : 1));
  put_array(out, t.offsets);
  put_array(out, t.ids);
  put_array(out, t.type_ids);
  out += sha256_hex(out);
  return out;
}

std::optional<TokenizedDataset> parse_tokens(const std::string& bytes, const std::string& key, std::string* why) {
  auto fail = [&](const char* reason) -> std::optional<TokenizedDataset> {
    if (why) *why = reason;
    return std::nullopt;
  };
  const std::string header = kMagic + key + "\n";
  if (bytes.size() < header.size() + kDigest || bytes.compare(0, kMagic.size(), kMagic) != 0)
    return fail("not a secateur token file of this version");
  if (bytes.compare(0, header.size(), header) != 0) return fail("made for another tokenizer or dataset");
  const size_t body_end = bytes.size() - kDigest;
  if (sha256_hex(std::string_view(bytes.data(), body_end)) != bytes.substr(body_end)) return fail("checksum mismatch");
  Cursor c{bytes, header.size(), body_end};
  uint32_t mark = 0;
  uint64_t n = 0, n_ids = 0, has_types = 0;
  if (!c.get(mark) || mark != kByteOrderMark) return fail("written on a host of the other byte order");
  if (!c.get(n) || !c.get(n_ids) || !c.get(has_types) || has_types > 1) return fail("malformed header");
  TokenizedDataset t;
  if (n == UINT64_MAX || !c.get_array(t.offsets, n + 1) || !c.get_array(t.ids, n_ids) ||
      (has_types && !c.get_array(t.type_ids, n_ids)) || c.pos != c.end)
    return fail("sizes do not match the header");
  if (t.offsets.front() != 0 || t.offsets.back() != static_cast<int64_t>(n_ids) ||
      !std::is_sorted(t.offsets.begin(), t.offsets.end()))
    return fail("offsets out of order");
  return t;
}

std::string default_cache_dir() {
  auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v && *v ? v : "";
  };
  if (!env("SECATEUR_CACHE_DIR").empty()) return env("SECATEUR_CACHE_DIR");
  if (!env("XDG_CACHE_HOME").empty()) return fs::join(env("XDG_CACHE_HOME"), "secateur");
  if (!env("HOME").empty()) return fs::join(env("HOME"), ".cache/secateur");
  return fs::join(fs::temp_directory(), "secateur-cache");
}

std::string token_cache_path(const std::string& cache_dir, const Dataset& dataset, const Tokenizer& tokenizer) {
  const std::string dir = cache_dir.empty() ? default_cache_dir() : cache_dir;
  return fs::join(fs::join(dir, "tokens"), sha256_hex(cache_key(dataset, tokenizer)).substr(0, 32) + ".tokens");
}

TokenizedDataset tokenize_dataset(const Dataset& dataset, const Tokenizer& tokenizer, const TokenizeOptions& options,
                                  CacheStatus* status) {
  auto set = [&](CacheStatus s) {
    if (status) *status = s;
  };
  if (!options.cache) {
    set(CacheStatus::disabled);
    return encode_all(dataset, tokenizer, options.threads);
  }
  const std::string key = cache_key(dataset, tokenizer);
  const std::string path = token_cache_path(options.cache_dir, dataset, tokenizer);
  CacheStatus outcome = CacheStatus::miss;
  if (fs::is_regular_file(path)) {
    std::string why;
    std::optional<TokenizedDataset> cached;
    try {
      cached = parse_tokens(fs::read_file(path), key, &why);
    } catch (const UserError& e) {
      why = e.what();
    }
    if (cached && cached->size() == dataset.examples.size()) {
      log::debug("token cache hit: " + path);
      set(CacheStatus::hit);
      return std::move(*cached);
    }
    if (cached) why = "holds " + std::to_string(cached->size()) + " examples, the dataset " + std::to_string(dataset.examples.size());
    log::warn("token cache " + path + " is unusable (" + why + "); tokenizing again");
    outcome = CacheStatus::rebuilt;
  }
  TokenizedDataset tokens = encode_all(dataset, tokenizer, options.threads);
  try {
    fs::create_directories(fs::parent_path(path));
    fs::write_atomic(path, serialize_tokens(tokens, key));
  } catch (const UserError& e) {
    // A read-only or full cache directory costs time, not correctness.
    log::warn(std::string("cannot write the token cache: ") + e.what());
  }
  set(outcome);
  return tokens;
}

}  // namespace secateur::data
