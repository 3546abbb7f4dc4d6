// `mmcompute` over HDF5 files as h5py users make them: external links, writing into a file
// that holds other objects, names without a leading slash, files another process holds.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cli/cli_helpers.hpp"

namespace mmc::test {
namespace {

// master.h5 holds its own dataset and links to data.h5 (a 512-byte userblock, a dataset
// before the linked ones), so no offset of one file is right in the other.
void make_linked_files(const TempDir& dir) {
  run_python_code(R"(
import sys, h5py, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(11)
img = rng.random((6, 20, 30))
with h5py.File(d + "/data.h5", "w", userblock_size=512) as f:
    f["pad"] = rng.random(3000)
    f["img"] = img
    f.create_dataset("zipped", data=img, chunks=(2, 10, 30), compression="gzip")
with h5py.File(d + "/master.h5", "w") as f:
    f["own"] = rng.random((6, 20, 30))
    f["img"] = h5py.ExternalLink("data.h5", "/img")
    f["zipped"] = h5py.ExternalLink("data.h5", "/zipped")
    f["again"] = h5py.SoftLink("/img")
np.save(d + "/expected.npy", img.mean(axis=(1, 2)))
)",
                  {dir.path()});
}

TEST(CliHdf5, ReducesAndDescribesAnExternalLinkFromTheFileThatHoldsIt) {
  TempDir dir;
  make_linked_files(dir);
  const json want = load_npy_output(dir.file("expected.npy"));
  for (const char* name : {"img", "zipped", "again"}) {
    const std::string out = dir.file(std::string(name) + ".npy");
    const CommandResult r =
        run_cli({"reduce", dir.file("master.h5") + ":/" + name, "--op", "mean", "--axis", "1,2",
                 "-j", "2", "--quiet", "--no-cache", "-o", out});
    ASSERT_EQ(r.exit_code, 0) << name << ": " << r.err;
    expect_same_values(want, load_npy_output(out), name);
  }
  const CommandResult r = run_cli({"info", dir.file("master.h5") + ":/img", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out).at("file"), dir.file("data.h5"));
}

TEST(CliHdf5, InfoOfAFileListsItsObjectsLikeH5ls) {
  TempDir dir;
  make_linked_files(dir);
  run_python_code(R"(
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "a") as f:
    f.create_dataset("deep/er/c", data=np.zeros((4, 5), "<u2"), chunks=(2, 5),
                     compression="gzip")
    f["dangling"] = h5py.SoftLink("/nothing")
    f.create_dataset("text", data=["a", "bc"], dtype=h5py.string_dtype())
)",
                  {dir.file("master.h5")});
  // h5py's view: every dataset reachable through a link, with shape and dtype.
  const json want = json::parse(run_python_code(R"(
import sys, json, h5py
out = {}
with h5py.File(sys.argv[1], "r") as f:
    def walk(group, prefix):
        for name in group:
            path = prefix + name
            link = group.get(name, getlink=True)
            try:
                obj = group[name]
            except KeyError:
                out[path] = "dangling"
                continue
            if isinstance(obj, h5py.Dataset):
                out[path] = [list(obj.shape), obj.dtype.str if obj.dtype.kind != "O" else "-"]
            elif isinstance(link, h5py.HardLink):
                out[path] = "group"
                walk(obj, path + "/")
    walk(f, "/")
print(json.dumps(out))
)",
                                                {dir.file("master.h5")}));
  const CommandResult r = run_cli({"info", dir.file("master.h5"), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json got = json::object();
  for (const json& e : json::parse(r.out)) {
    const std::string path = e.at("path");
    if (path == "/") continue;
    if (e.at("kind") == "dataset") {
      const std::string dtype = e.at("dtype");
      got[path] = json::array({e.at("shape"), dtype[0] == '<' || dtype[0] == '|' ? dtype : "-"});
    } else {
      got[path] = e.at("kind");
    }
  }
  EXPECT_EQ(got, want);
  const CommandResult text = run_cli({"info", dir.file("master.h5")});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("/img"), std::string::npos);
  EXPECT_NE(text.out.find("external link to data.h5:/img"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("chunked (2, 5) gzip"), std::string::npos) << text.out;
}

std::string tree_of(const std::string& file) { return run_python("hdf5_tree.py", {"dump", file}); }

// The lines of `before` missing from `after` (each object, its values' hash and attributes).
std::string lost_lines(const std::string& before, const std::string& after) {
  std::string lost;
  std::size_t begin = 0;
  while (begin < before.size()) {
    const std::size_t end = before.find('\n', begin);
    const std::string line = before.substr(begin, end - begin + 1);
    if (("\n" + after).find("\n" + line) == std::string::npos) lost += line;
    begin = end + 1;
  }
  return lost;
}

TEST(CliHdf5, ConvertIntoAnExistingFileKeepsItsOtherObjects) {
  TempDir dir;
  const std::string file = dir.file("tree.h5");
  run_python("hdf5_tree.py", {"make", file});
  run_python_code(
      "import sys, numpy as np\n"
      "np.save(sys.argv[1], np.arange(240, dtype='<i4').reshape(4, 6, 10))\n"
      "np.save(sys.argv[2], np.arange(240, dtype='<f8').reshape(4, 6, 10) / 3)\n",
      {dir.file("a.npy"), dir.file("b.npy")});
  const std::string before = tree_of(file);
  CommandResult r = run_cli({"convert", dir.file("a.npy"), file + ":/added/cube", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(run_python("hdf5_tree.py", {"check", file, "/added/cube", dir.file("a.npy")}),
            "same\n");
  const std::string after = tree_of(file);
  EXPECT_EQ(lost_lines(before, after), "");
  // The same name again: refused without --overwrite, the file untouched.
  r = run_cli({"convert", dir.file("b.npy"), file + ":/added/cube", "--quiet"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(is_one_error_line(r.err)) << r.err;
  EXPECT_NE(r.err.find("--overwrite"), std::string::npos) << r.err;
  EXPECT_EQ(tree_of(file), after);
  // --overwrite replaces that one dataset, chunked and compressed this time.
  r = run_cli({"convert", dir.file("b.npy"), file + ":/added/cube", "--overwrite", "--chunks",
               "2,3,10", "--compressor", "zlib", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(run_python("hdf5_tree.py", {"check", file, "/added/cube", dir.file("b.npy")}),
            "same\n");
  EXPECT_EQ(lost_lines(before, tree_of(file)), "");
  EXPECT_EQ(list_dir(dir.path()), (std::vector<std::string>{"a.npy", "b.npy", "tree.h5"}));
}

TEST(CliHdf5, NamesWithoutALeadingSlashMeanDatasetsAtTheRoot) {
  TempDir dir;
  run_python_code(
      "import sys, numpy as np\n"
      "np.save(sys.argv[1], np.arange(60, dtype='<u2').reshape(3, 4, 5))\n",
      {dir.file("a.npy")});
  CommandResult r =
      run_cli({"convert", dir.file("a.npy"), dir.file("out.h5") + ":name", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(list_dir(dir.path()), (std::vector<std::string>{"a.npy", "out.h5"}));
  EXPECT_EQ(run_python("hdf5_tree.py", {"check", dir.file("out.h5"), "/name", dir.file("a.npy")}),
            "same\n");
  r = run_cli({"reduce", dir.file("out.h5") + ":name", "--op", "sum", "--quiet", "--no-cache", "-o",
               dir.file("got.npy")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli({"reduce", dir.file("a.npy"), "--op", "sum", "--quiet", "--no-cache", "-o",
               dir.file("want.npy")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file(dir.file("got.npy")), read_file(dir.file("want.npy")));
  r = run_cli({"info", dir.file("out.h5") + ":name"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(CliHdf5, AFileOpenForWritingElsewhereSaysSoAndNamesTheWayOut) {
  TempDir dir;
  const std::string file = dir.file("busy.h5");
  run_python("hdf5_tree.py", {"make", file});
  // h5py holds the file open for writing until killed.
  const pid_t holder = ::fork();
  ASSERT_GE(holder, 0);
  if (holder == 0) {
    ::execl("/usr/bin/python3", "python3", "-c",
            "import sys, time, h5py\nf = h5py.File(sys.argv[1], 'a')\n"
            "open(sys.argv[1] + '.ready', 'w').close()\ntime.sleep(60)\n",
            file.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  for (int i = 0; i < 300 && !file_exists(file + ".ready"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(file_exists(file + ".ready"));
  const CommandResult reading = run_cli({"info", file + ":/raw"});
  const CommandResult writing = run_cli({"convert", file + ":/raw", file + ":/copy", "--quiet"});
  ::kill(holder, SIGKILL);
  ::waitpid(holder, nullptr, 0);
  EXPECT_EQ(reading.exit_code, 1);
  EXPECT_TRUE(is_one_error_line(reading.err)) << reading.err;
  EXPECT_NE(reading.err.find("another process holds it open for writing"), std::string::npos)
      << reading.err;
  EXPECT_NE(reading.err.find("HDF5_USE_FILE_LOCKING=FALSE"), std::string::npos) << reading.err;
  EXPECT_EQ(reading.err.find("errno"), std::string::npos) << reading.err;
  EXPECT_EQ(writing.exit_code, 1);
  EXPECT_TRUE(is_one_error_line(writing.err)) << writing.err;
  EXPECT_NE(writing.err.find("another process"), std::string::npos) << writing.err;
}

TEST(CliHdf5, AFileThatTripsLibhdf5GivesOneLineAndExitOne) {
  TempDir dir;
  // A runaway ends at the memory cap or the time limit; a few seconds of it are enough here
  // (under the sanitizers the cap is reached slowly, and 20 s per run add up).
  ::setenv("MMC_HDF5_PROBE_SECONDS", "4", 1);
  const std::string file = dir.file("loop.h5");
  run_python("hdf5_damage.py", {"heap_loop", file});
  const std::vector<std::vector<std::string>> runs = {
      {"info", file},
      {"info", file + ":/g/d"},
      {"reduce", file + ":/g/d", "--op", "sum", "--no-cache"},
      {"convert", file + ":/g/d", dir.file("out.npy")},
  };
  for (const auto& args : runs) {
    const CommandResult r = run_cli(args, 60);
    EXPECT_EQ(r.exit_code, 1) << args[0] << " " << args[1] << ": " << r.err;
    EXPECT_TRUE(is_one_error_line(r.err)) << r.err;
    EXPECT_NE(r.err.find("loop.h5"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("damaged file?"), std::string::npos) << r.err;
  }
  EXPECT_EQ(list_dir(dir.path()), (std::vector<std::string>{"loop.h5"}));
}

TEST(CliHdf5, ConvertIntoADamagedHdf5FileSaysItIsDamagedAndLeavesItAsItWas) {
  TempDir dir;
  // A runaway ends at the memory cap or the time limit; a few seconds of it are enough here
  // (under the sanitizers the cap is reached slowly, and 20 s per run add up).
  ::setenv("MMC_HDF5_PROBE_SECONDS", "4", 1);
  const std::string file = dir.file("loop.h5");
  run_python("hdf5_damage.py", {"heap_loop", file});
  run_python_code("import sys, numpy as np\nnp.save(sys.argv[1], np.arange(12.0))\n",
                  {dir.file("a.npy")});
  const std::string before = read_file(file);
  // The lookup of /g/new walks /g's damaged heap; --overwrite does not replace a damaged file.
  for (const bool overwrite : {false, true}) {
    std::vector<std::string> args = {"convert", dir.file("a.npy"), file + ":/g/new", "--quiet"};
    if (overwrite) args.push_back("--overwrite");
    const CommandResult r = run_cli(args, 60);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_TRUE(is_one_error_line(r.err)) << r.err;
    EXPECT_NE(r.err.find("loop.h5"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("damaged"), std::string::npos) << r.err;
    EXPECT_EQ(read_file(file), before);
  }
  EXPECT_EQ(list_dir(dir.path()), (std::vector<std::string>{"a.npy", "loop.h5"}));
}

TEST(CliHdf5, OverwriteReplacesAnExistingFileThatIsNotHdf5Whole) {
  TempDir dir;
  const std::string file = dir.file("out.h5");
  run_python_code("import sys, numpy as np\nnp.save(sys.argv[1], np.arange(12.0))\n",
                  {dir.file("a.npy")});
  write_file(file, "not an HDF5 file\n");
  CommandResult r = run_cli({"convert", dir.file("a.npy"), file + ":/x", "--quiet"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(is_one_error_line(r.err)) << r.err;
  EXPECT_EQ(read_file(file), "not an HDF5 file\n");
  r = run_cli({"convert", dir.file("a.npy"), file + ":/x", "--overwrite", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(run_python("hdf5_tree.py", {"check", file, "/x", dir.file("a.npy")}), "same\n");
  EXPECT_EQ(list_dir(dir.path()), (std::vector<std::string>{"a.npy", "out.h5"}));
}

TEST(CliHdf5, AFileWhoseWriterWasKilledSaysItsWriteFlagIsSetAndNamesH5clear) {
  TempDir dir;
  const std::string file = dir.file("latest.h5");
  run_python("hdf5_tree.py", {"make", file, "latest"});
  // A writer killed while it has the libver='latest' file open read-write.
  run_python_code(
      "import sys, subprocess\n"
      "subprocess.run([sys.executable, '-c', 'import sys, os, signal, h5py\\n'\n"
      "    'f = h5py.File(sys.argv[1], \"a\")\\nos.kill(os.getpid(), signal.SIGKILL)',\n"
      "    sys.argv[1]])\n",
      {file});
  run_python_code("import sys, numpy as np\nnp.save(sys.argv[1], np.arange(12.0))\n",
                  {dir.file("a.npy")});
  const std::vector<std::vector<std::string>> runs = {
      {"info", file},
      {"info", file + ":/raw"},
      {"convert", dir.file("a.npy"), file + ":/added", "--quiet"},
  };
  for (const auto& args : runs) {
    const CommandResult r = run_cli(args);
    EXPECT_EQ(r.exit_code, 1) << args[1] << ": " << r.err;
    EXPECT_TRUE(is_one_error_line(r.err)) << r.err;
    EXPECT_NE(r.err.find("write flag is set"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("h5clear -s " + file), std::string::npos) << r.err;
  }
}

TEST(CliHdf5, AFileWithAUserblockIsKnownAsHdf5BeforeLibhdf5Opens) {
  TempDir dir;
  const std::string file = dir.file("ub.h5");
  run_python_code(
      "import sys, h5py, numpy as np\n"
      "with h5py.File(sys.argv[1], 'w', userblock_size=512) as f:\n"
      "    f['x'] = np.arange(12.0)\n",
      {file});
  for (const std::string& source : {file, file + ":/x"}) {
    const CommandResult r = run_cli({"info", source, "--dtype", "u8", "--shape", "4"});
    EXPECT_EQ(r.exit_code, 2) << source << ": " << r.err;
    EXPECT_TRUE(is_one_error_line(r.err)) << r.err;
    EXPECT_NE(r.err.find("raw options"), std::string::npos) << r.err;
  }
  const CommandResult r = run_cli({"reduce", file, "--op", "sum", "--no-cache"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("name the dataset"), std::string::npos) << r.err;
}

TEST(CliHdf5, ConvertRemovesTheTemporaryFilesOfKilledWritersOfTheSameFile) {
  TempDir dir;
  run_python_code("import sys, numpy as np\nnp.save(sys.argv[1], np.arange(12.0))\n",
                  {dir.file("a.npy")});
  // A pid that is gone (a reaped child) and one that lives (this test).
  const pid_t gone = ::fork();
  ASSERT_GE(gone, 0);
  if (gone == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(gone, nullptr, 0), gone);
  const std::string dead = ".out.h5.tmp-" + std::to_string(gone) + "-0";
  const std::string alive = ".out.h5.tmp-" + std::to_string(::getpid()) + "-0";
  write_file(dir.file(dead), "left by a killed writer");
  write_file(dir.file(alive), "a writer still at work");
  const CommandResult r =
      run_cli({"convert", dir.file("a.npy"), dir.file("out.h5") + ":/x", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(list_dir(dir.path()), (std::vector<std::string>{alive, "a.npy", "out.h5"}));
}

// SIGKILL at points spread over `mmcompute convert` into a new .h5, into an existing .h5
// holding other objects (superblock v0, and libver='latest' v3, whose write flag a killed
// read-write open would leave set), and with --overwrite over an existing dataset: afterwards
// each destination reads as before or as before plus the whole dataset, never half of it
// (checked by h5py against the source), and no visible temporary file is left.
TEST(CliHdf5, ConvertKilledAtAnyMomentLeavesTheFileWholeOrAsItWas) {
  TempDir dir;
  const std::string src = dir.file("src.npy");
  run_python_code(
      "import sys, numpy as np\n"
      "np.save(sys.argv[1], np.random.default_rng(3).random((2, 1024, 1024)))\n",
      {src});  // 16 MiB: two tasks of the planner's ~8 MiB
  const std::string reference = dir.file("reference.h5");
  const std::string latest = dir.file("latest.h5");
  const std::string holding = dir.file("holding.h5");
  run_python("hdf5_tree.py", {"make", reference});
  run_python("hdf5_tree.py", {"make", latest, "latest"});
  run_python_code(
      "import sys, shutil, h5py, numpy as np\n"
      "shutil.copy(sys.argv[1], sys.argv[2])\n"
      "with h5py.File(sys.argv[2], 'a') as f:\n"
      "    f['out/cube'] = np.arange(12.0).reshape(3, 4)\n",
      {reference, holding});
  const std::vector<std::pair<std::string, std::string>> env = {{"MMC_DEBUG_TASK_DELAY_MS", "80"}};
  const auto args_for = [&](const std::string& dst, int k, bool overwrite) {
    std::vector<std::string> args = {"convert", src, dst + ":/out/cube", "-j", "2", "--quiet"};
    if (k % 2 == 1) args.insert(args.end(), {"--chunks", "1,256,1024", "--compressor", "zlib"});
    if (overwrite) args.push_back("--overwrite");
    return args;
  };
  constexpr int kPoints = 10;
  // Each case: its reference ("" for a new file), the name of its copies, --overwrite.
  struct Case {
    std::string reference;
    std::string stem;
    bool overwrite;
    std::vector<std::string> files;
  };
  std::vector<Case> cases = {{"", "new", false, {}},
                             {reference, "tree", false, {}},
                             {latest, "latest", false, {}},
                             {holding, "replace", true, {}}};
  std::set<std::string> expected_names = {"src.npy",    "reference.h5", "latest.h5",
                                          "holding.h5", "cli.stdout",   "cli.stderr"};
  for (Case& c : cases) {
    // One run to completion: how long a run of this case takes, and that it completes.
    const std::string whole = dir.file(c.stem + "-whole.h5");
    expected_names.insert(c.stem + "-whole.h5");
    if (!c.reference.empty()) write_file(whole, read_file(c.reference));
    const auto start = std::chrono::steady_clock::now();
    CliProcess run = spawn_cli(args_for(whole, 0, c.overwrite), dir.path(), env);
    ASSERT_EQ(wait_exit(run.pid, 60), 0) << read_file(run.err_path);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (int k = 0; k < kPoints; ++k) {
      const std::string name = c.stem + std::to_string(k) + ".h5";
      const std::string dst = dir.file(name);
      expected_names.insert(name);
      if (!c.reference.empty()) write_file(dst, read_file(c.reference));
      c.files.push_back(dst);
      CliProcess p = spawn_cli(args_for(dst, k, c.overwrite), dir.path(), env);
      // Points from the start to a little past the uninterrupted run's end (which varies).
      const double at = 1.25 * seconds * (k + 0.5) / kPoints;
      std::this_thread::sleep_for(std::chrono::duration<double>(at));
      ::kill(-p.pid, SIGKILL);  // the CLI and its workers (spawn_cli makes a process group)
      wait_exit(p.pid, 30);
    }
  }
  const auto verify = [&](const std::string& ref, const std::vector<std::string>& files) {
    std::vector<std::string> args = {"verify", src, "/out/cube", ref.empty() ? "-" : ref};
    args.insert(args.end(), files.begin(), files.end());
    return run_python("hdf5_tree.py", args);
  };
  std::string all;
  for (const Case& c : cases) {
    const std::string report = verify(c.reference, c.files);
    EXPECT_EQ(report.find("BAD"), std::string::npos) << c.stem << ":\n" << report;
    std::printf("after SIGKILL, %s:\n%s", c.stem.c_str(), report.c_str());
    all += report;
  }
  // Early kills land before anything is linked. Whether a late one lands after the commit
  // depends on the machine's load (a CI run once saw none of 20 do so), so the late outcome is
  // printed, not required; every outcome, late or early, must be absent or complete (above).
  EXPECT_NE(all.find("absent"), std::string::npos);
  for (const Case& c : cases) {
    EXPECT_EQ(verify(c.reference, {dir.file(c.stem + "-whole.h5")}), "complete\n") << c.stem;
  }
  // Killed writers leave at most hidden temporary files, never a visible one.
  for (const std::string& name : list_dir(dir.path())) {
    EXPECT_TRUE(name[0] == '.' || expected_names.count(name) == 1) << name;
  }
  // A later convert into a file a killed one left behind works and keeps its objects.
  for (const Case& c : cases) {
    if (c.reference.empty()) continue;
    const CommandResult again =
        run_cli({"convert", src, c.files.front() + ":/out/cube", "--overwrite", "--quiet"});
    EXPECT_EQ(again.exit_code, 0) << again.err;
    EXPECT_EQ(verify(c.reference, {c.files.front()}), "complete\n");
  }
}

}  // namespace
}  // namespace mmc::test
