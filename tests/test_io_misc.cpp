// SHA-256 against the FIPS 180-2 / NIST example vectors and sha256sum, and the atomic-file helpers.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "multilora/io/atomic_file.h"
#include "multilora/io/sha256.h"
#include "multilora/util/error.h"
#include "test_support.h"

namespace fs = std::filesystem;
using multilora::RuntimeError;
using namespace multilora::io;

namespace {

// A fresh folder per test (test_support.h removes it at exit).
struct TempDir {
    fs::path root = multilora::test::make_temp_dir("io_misc");
    std::string file(const std::string& name) const { return (root / name).string(); }
    const fs::path& path() const { return root; }
};

size_t entries_in(const fs::path& dir) {
    return static_cast<size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

// Asserts `fn` throws RuntimeError whose message contains every phrase.
template <class F>
void expect_error(F&& fn, std::vector<std::string> phrases) {
    try {
        fn();
        ADD_FAILURE() << "expected a RuntimeError";
    } catch (const RuntimeError& e) {
        for (const auto& p : phrases) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
}

}  // namespace

// ---------------------------------------------------------------- SHA-256

TEST(ioSha256, NistVectors) {
    // FIPS 180-2 appendix B / NIST CSRC examples.
    EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),  // 448 bits
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    EXPECT_EQ(sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrs"
                         "mnopqrstnopqrstu"),  // 896 bits
              "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(ioSha256, FileHashMatchesInMemoryHashAcrossBlockBoundaries) {
    TempDir dir;
    for (size_t n : {0, 1, 55, 56, 63, 64, 65, 119, 120, 128, (1 << 20) - 1, (1 << 20) + 3}) {
        std::string data(n, '\0');
        for (size_t i = 0; i < n; ++i) data[i] = static_cast<char>((i * 131 + 7) & 0xff);
        const std::string p = dir.file("h.bin");
        write_file_atomic(p, data);
        EXPECT_EQ(sha256_file_hex(p), sha256_hex(data)) << n;
    }
}

TEST(ioSha256, FileHashMatchesSha256sum) {
    if (std::system("command -v sha256sum >/dev/null 2>&1") != 0) GTEST_SKIP() << "sha256sum not installed";
    TempDir dir;
    std::string data;
    for (int64_t i = 0; i < 300000; ++i) data += std::to_string(i * 7919) + (i % 17 ? "," : "\n");
    const std::string p = dir.file("data.txt");
    write_file_atomic(p, data);
    std::string cmd = "sha256sum '" + p + "'";
    FILE* pipe = ::popen(cmd.c_str(), "r");
    ASSERT_NE(pipe, nullptr);
    char buf[65] = {};
    ASSERT_EQ(std::fread(buf, 1, 64, pipe), 64u);
    ::pclose(pipe);
    EXPECT_EQ(sha256_file_hex(p), std::string(buf, 64));
}

TEST(ioSha256, UnreadableFileNamesThePath) {
    TempDir dir;
    const std::string missing = dir.file("absent.safetensors");
    expect_error([&] { sha256_file_hex(missing); }, {missing, "No such file or directory"});
    expect_error([&] { sha256_file_hex(dir.path().string()); }, {dir.path().string(), "Is a directory"});
}

// ---------------------------------------------------------------- atomic files

TEST(ioAtomicFile, WritesAndOverwritesLeavingNoTemporaryFiles) {
    TempDir dir;
    const std::string p = dir.file("out.json");
    write_file_atomic(p, std::string("first\0with nul", 14));
    EXPECT_EQ(read_file(p), std::string("first\0with nul", 14));
    write_file_atomic(p, "second");
    EXPECT_EQ(read_file(p), "second");
    write_file_atomic(p, "");
    EXPECT_EQ(read_file(p), "");
    EXPECT_EQ(entries_in(dir.path()), 1u);
}

TEST(ioAtomicFile, FailuresNameThePathAndLeaveNothingBehind) {
    TempDir dir;
    const std::string nodir = dir.file("missing/out.png");
    expect_error([&] { write_file_atomic(nodir, "x"); }, {nodir, "No such file or directory"});
    EXPECT_EQ(entries_in(dir.path()), 0u);

    // rename(2) onto a non-empty directory fails after the data was written: the temp file must go.
    const std::string target = dir.file("occupied");
    fs::create_directories(fs::path(target) / "child");
    expect_error([&] { write_file_atomic(target, "data"); }, {target, "rename failed"});
    EXPECT_EQ(entries_in(dir.path()), 1u);
    EXPECT_TRUE(fs::is_directory(target));
}

TEST(ioAtomicFile, StreamingWriterCommitsOrCleansUp) {
    TempDir dir;
    const std::string p = dir.file("stream.bin");
    {
        AtomicFileWriter w(p);
        EXPECT_EQ(fs::path(w.temp_path()).parent_path(), dir.path());
        w.write("abc");
        w.write("def");
        EXPECT_FALSE(fs::exists(p));  // nothing under the final name before commit
        EXPECT_TRUE(fs::exists(w.temp_path()));
        w.commit();
        EXPECT_THROW(w.write("more"), RuntimeError);
    }
    EXPECT_EQ(read_file(p), "abcdef");
    {
        AtomicFileWriter w(dir.file("abandoned.bin"));
        w.write("partial");
    }  // destroyed without commit
    EXPECT_FALSE(fs::exists(dir.file("abandoned.bin")));
    EXPECT_EQ(entries_in(dir.path()), 1u);
}

TEST(ioAtomicFile, TempPathsAreUniqueAndBesideTheTarget) {
    std::set<std::string> seen;
    for (int i = 0; i < 100; ++i) {
        const std::string t = temp_path_for("/some/dir/image.png");
        EXPECT_EQ(fs::path(t).parent_path(), fs::path("/some/dir"));
        EXPECT_NE(t, "/some/dir/image.png");
        EXPECT_NE(t.find(std::to_string(::getpid())), std::string::npos);
        EXPECT_TRUE(seen.insert(t).second) << t;
    }
}

TEST(ioAtomicFile, AppendLineDurableAppendsWholeLines) {
    TempDir dir;
    const std::string p = dir.file("log.jsonl");
    append_line_durable(p, R"({"i":1})");
    append_line_durable(p, "");
    append_line_durable(p, "third");
    EXPECT_EQ(read_file(p), "{\"i\":1}\n\nthird\n");

    // Concurrent appenders never interleave within a line.
    const std::string q = dir.file("concurrent.jsonl");
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 100; ++i)
                append_line_durable(q, "thread" + std::to_string(t) + "-" + std::string(200, 'a' + t));
        });
    for (auto& th : threads) th.join();
    std::istringstream lines(read_file(q));
    std::string line;
    int count = 0;
    while (std::getline(lines, line)) {
        ++count;
        ASSERT_EQ(line.size(), 208u) << line;
        const char c = line[6];
        ASSERT_EQ(line.substr(8), std::string(200, 'a' + (c - '0'))) << line;
    }
    EXPECT_EQ(count, 400);

    const std::string bad = dir.file("nodir/log.jsonl");
    expect_error([&] { append_line_durable(bad, "x"); }, {bad, "No such file or directory"});
}

TEST(ioAtomicFile, EnsureWritableDirCreatesAndProbes) {
    TempDir dir;
    const std::string nested = dir.file("a/b/c");
    ensure_writable_dir(nested);
    EXPECT_TRUE(fs::is_directory(nested));
    EXPECT_EQ(entries_in(nested), 0u);  // the probe file was removed
    ensure_writable_dir(nested);         // idempotent

    // Tests run as root, so chmod cannot make a directory unwritable; use paths that cannot work at all.
    const std::string file = dir.file("regular_file");
    write_file_atomic(file, "x");
    const std::string under_file = file + "/sub";
    expect_error([&] { ensure_writable_dir(under_file); },
                 {"output directory '" + under_file + "' is not writable", "Not a directory"});
    expect_error([&] { ensure_writable_dir(file); },
                 {"output directory '" + file + "' is not writable", "it exists but is not a directory"});
    expect_error([&] { ensure_writable_dir("/proc"); }, {"output directory '/proc' is not writable: "});
}

TEST(ioAtomicFile, ReadFileErrorsNameThePath) {
    TempDir dir;
    const std::string missing = dir.file("nothing.txt");
    expect_error([&] { read_file(missing); }, {missing, "No such file or directory"});
    expect_error([&] { read_file(dir.path().string()); }, {dir.path().string(), "Is a directory"});
}
