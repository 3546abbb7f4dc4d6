// The CLI's cache commands: the cache folder's ls, clear and prune.
#include "cache_cli.hpp"

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <nlohmann/json.hpp>

#include "mmc/mmc.hpp"
#include "progress_bar.hpp"

namespace mmc::cli {
namespace {

std::uint64_t parse_max_size(const std::string& text) {
  try {
    return parse_max_nbytes(text);
  } catch (const Error&) {
    throw Error(ErrorCode::InvalidArgument,
                "--max-size '" + text +
                    "' is invalid: use a byte count or a number with K, M or G (powers of "
                    "1024), e.g. 1G");
  }
}

std::string local_time(std::int64_t ns) {
  const std::time_t t = static_cast<std::time_t>(ns / 1000000000);
  std::tm tm{};
  ::localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string entries_phrase(std::uint64_t n, std::uint64_t bytes) {
  return std::to_string(n) + (n == 1 ? " entry (" : " entries (") + format_bytes(bytes) + ")";
}

int run_ls(const Cache& cache, bool json) {
  const std::vector<CacheEntryInfo> entries = cache.list();
  std::uint64_t total = 0;
  for (const CacheEntryInfo& e : entries) total += e.size;
  if (json) {
    nlohmann::ordered_json out;
    out["folder"] = cache.folder();
    out["entries"] = nlohmann::ordered_json::array();
    for (const CacheEntryInfo& e : entries) {
      nlohmann::ordered_json j;
      j["key"] = e.key;
      j["size"] = e.size;
      j["last_use"] = local_time(e.last_use_ns);
      j["last_use_ns"] = e.last_use_ns;
      j["what"] = e.what;
      j["valid"] = e.valid;
      out["entries"].push_back(j);
    }
    out["total_bytes"] = total;
    write_stdout(out.dump(2) + "\n");
    return 0;
  }
  std::string text;
  char line[256];
  if (!entries.empty()) {
    std::snprintf(line, sizeof line, "%-32s  %10s  %-19s  %s\n", "KEY", "SIZE", "LAST USE", "WHAT");
    text += line;
  }
  for (const CacheEntryInfo& e : entries) {
    std::snprintf(line, sizeof line, "%-32s  %10s  %-19s  ", e.key.c_str(),
                  format_bytes(e.size).c_str(), local_time(e.last_use_ns).c_str());
    text += line + e.what + "\n";
  }
  text += entries_phrase(entries.size(), total) + " in " + cache.folder() + "\n";
  write_stdout(text);
  return 0;
}

}  // namespace

int run_cache_command(CacheCommand command, const CacheCommandArgs& args) {
  const std::uint64_t max_size = command == CacheCommand::Prune ? parse_max_size(args.max_size) : 0;
  CacheOptions options;
  options.folder = cache_folder(args.folder);
  const Cache cache(options);
  if (command == CacheCommand::Ls) return run_ls(cache, args.json);
  if (command == CacheCommand::Clear) {
    const CacheRemoval r = cache.clear();
    write_stdout("removed " + entries_phrase(r.removed_entries, r.removed_bytes) + " from " +
                 cache.folder() + "\n");
    return 0;
  }
  const CacheRemoval r = cache.prune(max_size);
  write_stdout("removed " + entries_phrase(r.removed_entries, r.removed_bytes) + ", kept " +
               entries_phrase(r.kept_entries, r.kept_bytes) + " within " + format_bytes(max_size) +
               " in " + cache.folder() + "\n");
  return 0;
}

}  // namespace mmc::cli
