// A program for the stdio tests (stdio_test.cpp): prints from the parent, from mmc::Pool tasks
// and from run_tasks tasks (the process backend of reduce and map_slices) without ever
// flushing, so a lost or repeated buffer shows as a missing or repeated line. With the argument
// "cout-unsynced" it prints with std::cout unsynced from stdio (a buffer of its own) instead.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "mmc/parallel.hpp"

namespace {

bool use_cout = false;  // set before any fork, so every worker inherits it

int say(const std::string& line) {
  if (use_cout) {
    std::cout << line << '\n';
  } else {
    std::printf("%s\n", line.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "cout-unsynced") == 0) {
    std::ios::sync_with_stdio(false);
    use_cout = true;
  }
  say("parent before the pool");
  {
    mmc::ParallelOptions options;
    options.backend = mmc::Backend::Process;
    options.n_jobs = 2;
    mmc::Pool pool(options);
    std::vector<int> items = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    mmc::CallOptions call;
    call.chunksize = 1;
    pool.map([](int i) { return say("pool task " + std::to_string(i)); }, items, call);
    pool.submit([] { say("pool submit"); }).get();
  }
  say("parent between");
  mmc::PoolOptions options;
  options.n_jobs = 2;
  options.backend = mmc::Backend::Process;
  mmc::TaskSet call;
  call.n_tasks = 8;
  call.run = [](std::size_t task, mmc::ByteView, mmc::Bytes&) {
    say("run_tasks task " + std::to_string(task));
  };
  call.on_result = [](std::size_t, mmc::ByteView) {};
  mmc::run_tasks(options, call);
  say("parent after");
  return 0;
}
