// Writing outputs atomically: data goes to a temporary file beside the target, is flushed, then renamed,
// so a crash never leaves a partial output under the final name.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace multilora::io {

// Writes `bytes` to `path` atomically. Throws RuntimeError (naming the path and errno text) on failure;
// the temporary file is removed on every failure path.
void write_file_atomic(const std::string& path, std::string_view bytes);

// Appends one line (a '\n' is added) with a single write(2) under O_APPEND, then fsyncs.
void append_line_durable(const std::string& path, std::string_view line);

// Creates `dir` (and parents) and checks it is writable by creating and removing a probe file.
// Throws RuntimeError with a clear message otherwise.
void ensure_writable_dir(const std::string& dir);

// A temporary path beside `path` that is unique to this process and call.
std::string temp_path_for(const std::string& path);

std::string read_file(const std::string& path);  // throws RuntimeError when unreadable

// Streaming form of write_file_atomic, for outputs too large to assemble in memory first:
// write() any number of times, then commit() (fsync + rename + directory fsync). If the writer is
// destroyed without a successful commit(), or any step throws, the temporary file is removed and
// nothing appears under `path`. Errors are RuntimeErrors naming `path` and the errno text.
class AtomicFileWriter {
public:
    explicit AtomicFileWriter(std::string path);
    ~AtomicFileWriter();
    AtomicFileWriter(const AtomicFileWriter&) = delete;
    AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

    void write(std::string_view bytes);
    void commit();
    const std::string& path() const { return path_; }
    const std::string& temp_path() const { return temp_path_; }

private:
    void abandon() noexcept;
    std::string path_;
    std::string temp_path_;
    int fd_ = -1;
    bool committed_ = false;
};

// An exclusive flock(2) on a folder, held while alive: processes that write a shared file of the folder by
// reading the folder's state first (the batch gallery) take it, so that the last writer saw every earlier write.
// flock on the folder itself leaves no lock file behind. Throws RuntimeError when the folder cannot be opened.
class DirectoryLock {
public:
    explicit DirectoryLock(const std::string& dir);
    ~DirectoryLock();
    DirectoryLock(const DirectoryLock&) = delete;
    DirectoryLock& operator=(const DirectoryLock&) = delete;

private:
    int fd_ = -1;
};

}  // namespace multilora::io
