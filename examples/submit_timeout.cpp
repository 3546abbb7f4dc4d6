// submit with a timeout: a task that never ends is stopped (its worker killed and replaced)
// and reported as Error(Timeout); the pool goes on working. Callbacks report completions.
#include <unistd.h>

#include <cstdio>

#include "mmc/parallel.hpp"

int main() {
  mmc::ParallelOptions options;
  options.n_jobs = 2;
  mmc::Pool pool(options);

  mmc::TaskOptions deadline;
  deadline.timeout = 0.5;  // seconds
  auto stuck = pool.submit_with(deadline, [] {
    for (;;) pause();  // a task that hangs
  });
  auto fine = pool.submit([](int a, int b) { return a + b; }, 40, 2);
  fine.add_done_callback([](const int& v) { std::printf("callback: %d\n", v); });

  int status = 1;
  try {
    stuck.get();
  } catch (const mmc::Error& error) {
    std::printf("stuck task: %s\n", error.what());
    status = error.code() == mmc::ErrorCode::Timeout ? 0 : 1;
  }
  std::printf("fine task: %d\n", fine.get());
  // get(timeout) is a hard deadline too.
  auto slow = pool.submit([] {
    sleep(30);
    return 1;
  });
  try {
    slow.get(std::chrono::milliseconds(200));
    status = 1;
  } catch (const mmc::Error& error) {
    std::printf("slow task: %s\n", error.what());
  }
  return fine.get() == 42 ? status : 1;
}
