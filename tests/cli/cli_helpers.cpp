// Helpers of the CLI tests.
#include "cli/cli_helpers.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

namespace mmc::test {
namespace {

void flatten(const json& value, json& out) {
  if (value.is_array()) {
    for (const auto& v : value) flatten(v, out);
  } else {
    out.push_back(value);
  }
}

bool is_float_dtype(const std::string& dtype) { return dtype == "f32" || dtype == "f64"; }

// pid -> parent pid of every process, from /proc/<pid>/stat.
std::map<pid_t, pid_t> parent_map() {
  std::map<pid_t, pid_t> parents;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return parents;
  while (dirent* e = readdir(proc)) {
    const std::string name = e->d_name;
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    std::ifstream in("/proc/" + name + "/stat");
    std::string stat;
    std::getline(in, stat);
    const auto paren = stat.rfind(')');  // comm may hold spaces and parentheses
    if (paren == std::string::npos) continue;
    std::istringstream rest(stat.substr(paren + 1));
    char state = 0;
    long ppid = 0;
    rest >> state >> ppid;
    if (state == 'Z' || state == 'X') continue;
    parents[static_cast<pid_t>(std::stol(name))] = static_cast<pid_t>(ppid);
  }
  closedir(proc);
  return parents;
}

}  // namespace

json cube_fixture(const std::vector<std::string>& args) {
  const std::string out = run_python("cli_cube.py", args);
  return out.empty() ? json() : json::parse(out);
}

json load_npy_output(const std::string& path) { return cube_fixture({"load", path}); }

json load_json_output(const std::string& path) {
  const json doc = json::parse(read_file(path));
  json flat = json::array();
  flatten(doc.at("data"), flat);
  return {{"dtype", doc.at("dtype")}, {"shape", doc.at("shape")}, {"data", flat}};
}

json parse_text_values(const std::string& text, const std::string& dtype) {
  json data = json::array();
  std::istringstream in(text);
  std::string token;
  while (in >> token) {
    if (token.back() == ',') token.pop_back();
    std::istringstream fields(token);
    std::string field;
    while (std::getline(fields, field, ',')) {
      if (field.empty()) continue;
      if (is_float_dtype(dtype)) {
        if (field == "nan" || field == "-nan" || field == "inf" || field == "-inf") {
          data.push_back(nullptr);
        } else {
          data.push_back(std::strtod(field.c_str(), nullptr));
        }
      } else if (field[0] == '-') {
        std::int64_t v = 0;
        std::from_chars(field.data(), field.data() + field.size(), v);
        data.push_back(v);
      } else {
        std::uint64_t v = 0;
        std::from_chars(field.data(), field.data() + field.size(), v);
        data.push_back(v);
      }
    }
  }
  return {{"dtype", dtype}, {"data", data}};
}

void expect_same_values(const json& expected, const json& actual, const std::string& what) {
  const std::string dtype = expected.at("dtype");
  if (actual.contains("dtype")) {
    EXPECT_EQ(actual.at("dtype"), expected.at("dtype")) << what;
  }
  if (actual.contains("shape")) {
    EXPECT_EQ(actual.at("shape"), expected.at("shape")) << what;
  }
  const json& want = expected.at("data");
  const json& got = actual.at("data");
  ASSERT_EQ(got.size(), want.size()) << what << ": " << got.dump();
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (want[i].is_null() || !is_float_dtype(dtype)) {
      EXPECT_EQ(got[i], want[i]) << what << " at flat index " << i;
      continue;
    }
    const double w = want[i].get<double>();
    ASSERT_TRUE(got[i].is_number()) << what << " at flat index " << i << ": " << got[i];
    const double g = got[i].get<double>();
    EXPECT_LE(std::fabs(g - w), 1e-12 * std::fabs(w))
        << what << " at flat index " << i << ": got " << g << ", numpy " << w;
  }
}

bool is_one_error_line(const std::string& text) {
  return text.rfind("mmcompute: error: ", 0) == 0 && !text.empty() && text.back() == '\n' &&
         std::count(text.begin(), text.end(), '\n') == 1;
}

CliProcess spawn_cli(const std::vector<std::string>& args, const std::string& dir,
                     const std::vector<std::pair<std::string, std::string>>& env) {
  CliProcess p;
  p.out_path = dir + "/cli.stdout";
  p.err_path = dir + "/cli.stderr";
  std::vector<std::string> argv{cli_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  p.pid = fork();
  if (p.pid == 0) {
    setpgid(0, 0);
    const int in = open("/dev/null", O_RDONLY);
    const int out = open(p.out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = open(p.err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0 || err < 0) _exit(126);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
    signal(SIGINT, SIG_DFL);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  EXPECT_GT(p.pid, 0) << "fork failed";
  return p;
}

int wait_exit(pid_t pid, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  int status = 0;
  while (true) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      ADD_FAILURE() << "waitpid failed";
      return -1;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "mmcompute still running after " << seconds << " s: killing it";
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::vector<pid_t> descendants(pid_t root) {
  const auto parents = parent_map();
  std::vector<pid_t> found{root};
  for (std::size_t i = 0; i < found.size(); ++i) {
    for (const auto& [pid, ppid] : parents) {
      if (ppid == found[i]) found.push_back(pid);
    }
  }
  found.erase(found.begin());
  return found;
}

std::vector<pid_t> leaf_descendants(pid_t root) {
  const auto parents = parent_map();
  std::vector<pid_t> all = descendants(root);
  std::vector<pid_t> leaves;
  for (pid_t p : all) {
    const bool has_child =
        std::any_of(parents.begin(), parents.end(), [p](const auto& e) { return e.second == p; });
    if (!has_child) leaves.push_back(p);
  }
  return leaves;
}

bool process_gone(pid_t pid, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (kill(pid, 0) != 0 && errno == ESRCH) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace mmc::test
