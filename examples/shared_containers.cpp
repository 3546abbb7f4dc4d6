// Containers in shared memory: workers count words into a SharedMap, collect long words in a
// SharedVector and log to a SharedString, with no server process (multiprocessing.Manager's
// dict and list need one) and no result crossing a pipe.
#include "mmc/shared_containers.hpp"

#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "mmc/parallel.hpp"

namespace {

std::vector<std::string> words_of(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  for (std::string word; in >> word;) words.push_back(word);
  return words;
}

}  // namespace

int main() {
  const std::vector<std::string> documents = {
      "the pool forks its workers once",     "the workers map the segment",
      "a segment has a fixed size",          "the lock survives a dead holder",
      "offset pointers work at any address", "the parent sees every word"};

  mmc::ParallelOptions options;
  options.n_jobs = 2;
  mmc::Pool pool(options);
  // Each container lives in its own segment of a fixed size, chosen here.
  mmc::SharedMap<std::string, long> counts(mmc::SegmentSize{1 << 20});
  mmc::SharedVector<std::string> long_words(mmc::SegmentSize{1 << 20});
  mmc::SharedString log(mmc::SegmentSize{64 << 10});

  using Args = std::tuple<mmc::SharedMap<std::string, long>, mmc::SharedVector<std::string>,
                          mmc::SharedString, std::string>;
  std::vector<Args> args;
  for (const std::string& doc : documents) args.emplace_back(counts, long_words, log, doc);
  pool.starmap(
      [](mmc::SharedMap<std::string, long> c, mmc::SharedVector<std::string> v, mmc::SharedString s,
         const std::string& doc) {
        for (const std::string& word : words_of(doc)) {
          c.update(word, 0, [](long& n) { ++n; });  // atomic, unlike Manager's d[k] += 1
          if (word.size() >= 8) v.push_back(word);
        }
        s.append("counted: " + doc + "\n");
      },
      args);

  std::map<std::string, long> want;
  for (const std::string& doc : documents) {
    for (const std::string& word : words_of(doc)) ++want[word];
  }
  const std::map<std::string, long> seen = counts.to_map();
  std::printf("%zu distinct words, 'the' %ld times, %zu long words, %zu log bytes of %llu\n",
              seen.size(), seen.at("the"), long_words.size(), log.size(),
              static_cast<unsigned long long>(log.capacity_bytes()));
  return seen == want && long_words.size() == 2 && log.str().size() > 100 ? 0 : 1;
}
