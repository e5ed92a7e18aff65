// Atomic and durable file writes: temporary file beside the target, fsync, rename, directory fsync.
#include "multilora/io/atomic_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include "multilora/util/error.h"

namespace multilora::io {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

// Writes all of `bytes`, retrying on EINTR and short writes. Returns 0 or an errno value.
int write_all(int fd, const char* data, size_t len) {
    while (len > 0) {
        ssize_t n = ::write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (n == 0) return EIO;
        data += n;
        len -= static_cast<size_t>(n);
    }
    return 0;
}

std::string parent_dir_of(const std::string& path) {
    std::filesystem::path p(path);
    std::filesystem::path parent = p.parent_path();
    return parent.empty() ? std::string(".") : parent.string();
}

// Best effort: makes a rename durable. Some filesystems refuse fsync on directories; that is not an error.
void fsync_dir(const std::string& dir) {
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return;
    (void)::fsync(dfd);
    ::close(dfd);
}

std::atomic<unsigned long> g_temp_counter{0};

}  // namespace

std::string temp_path_for(const std::string& path) {
    return path + ".tmp-" + std::to_string(static_cast<long>(::getpid())) + "-" +
           std::to_string(g_temp_counter.fetch_add(1));
}

AtomicFileWriter::AtomicFileWriter(std::string path) : path_(std::move(path)) {
    if (path_.empty()) throw RuntimeError("cannot write a file with an empty path");
    // The rename below would replace a link, not follow it; a link where an output goes is refused anyway, so
    // that nobody's link is silently turned into a file and no write is ever aimed outside the output folder.
    std::error_code ec;
    if (std::filesystem::is_symlink(path_, ec))
        throw RuntimeError("cannot write '" + path_ + "': it is a symbolic link (to '" +
                           std::filesystem::read_symlink(path_, ec).string() +
                           "'); multilora does not write through or over links: remove it");
    temp_path_ = temp_path_for(path_);
    fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ < 0)
        throw RuntimeError("cannot write '" + path_ + "': cannot create temporary file '" + temp_path_ +
                           "': " + errno_text(errno));
}

AtomicFileWriter::~AtomicFileWriter() {
    if (!committed_) abandon();
}

void AtomicFileWriter::abandon() noexcept {
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
    if (!temp_path_.empty()) {
        ::unlink(temp_path_.c_str());
        temp_path_.clear();
    }
}

void AtomicFileWriter::write(std::string_view bytes) {
    if (committed_ || fd_ < 0) throw RuntimeError("cannot write '" + path_ + "': writer is already closed");
    if (int err = write_all(fd_, bytes.data(), bytes.size())) {
        abandon();
        throw RuntimeError("cannot write '" + path_ + "': " + errno_text(err));
    }
}

void AtomicFileWriter::commit() {
    if (committed_ || fd_ < 0) throw RuntimeError("cannot write '" + path_ + "': writer is already closed");
    if (::fsync(fd_) != 0) {
        int err = errno;
        abandon();
        throw RuntimeError("cannot write '" + path_ + "': fsync failed: " + errno_text(err));
    }
    int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) {
        int err = errno;
        abandon();
        throw RuntimeError("cannot write '" + path_ + "': close failed: " + errno_text(err));
    }
    if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
        int err = errno;
        abandon();
        throw RuntimeError("cannot write '" + path_ + "': rename failed: " + errno_text(err));
    }
    committed_ = true;
    temp_path_.clear();
    fsync_dir(parent_dir_of(path_));
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
    AtomicFileWriter w(path);
    w.write(bytes);
    w.commit();
}

void append_line_durable(const std::string& path, std::string_view line) {
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) throw RuntimeError("cannot append to '" + path + "': " + errno_text(errno));
    std::string buf;
    buf.reserve(line.size() + 1);
    buf.append(line.data(), line.size());
    buf.push_back('\n');
    // One write(2) under O_APPEND keeps concurrent appenders from interleaving within a line;
    // write_all only loops in the (rare) case of a short write.
    int err = write_all(fd, buf.data(), buf.size());
    if (err == 0 && ::fsync(fd) != 0) err = errno;
    if (::close(fd) != 0 && err == 0) err = errno;
    if (err != 0) throw RuntimeError("cannot append to '" + path + "': " + errno_text(err));
}

void ensure_writable_dir(const std::string& dir_in) {
    const std::string dir = dir_in.empty() ? std::string(".") : dir_in;
    std::error_code ec;
    if (std::filesystem::exists(dir, ec) && !std::filesystem::is_directory(dir, ec))
        throw RuntimeError("output directory '" + dir + "' is not writable: it exists but is not a directory");
    ec.clear();
    std::filesystem::create_directories(dir, ec);
    if (ec) {
        throw RuntimeError("output directory '" + dir + "' is not writable: cannot create it: " + ec.message());
    }
    if (!std::filesystem::is_directory(dir, ec)) {
        throw RuntimeError("output directory '" + dir + "' is not writable: it exists but is not a directory");
    }
    const std::string probe = (std::filesystem::path(dir) / (".multilora-write-probe-" +
                                                              std::to_string(static_cast<long>(::getpid())) + "-" +
                                                              std::to_string(g_temp_counter.fetch_add(1))))
                                  .string();
    int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) throw RuntimeError("output directory '" + dir + "' is not writable: " + errno_text(errno));
    ::close(fd);
    ::unlink(probe.c_str());
}

std::string read_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw RuntimeError("cannot read '" + path + "': " + errno_text(errno));
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        ::close(fd);
        throw RuntimeError("cannot read '" + path + "': " + errno_text(EISDIR));
    }
    std::string out;
    if (S_ISREG(st.st_mode) && st.st_size > 0) out.reserve(static_cast<size_t>(st.st_size));
    char buf[1 << 16];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof(buf));
        if (n < 0) {
            if (errno == EINTR) continue;
            int err = errno;
            ::close(fd);
            throw RuntimeError("cannot read '" + path + "': " + errno_text(err));
        }
        if (n == 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return out;
}

DirectoryLock::DirectoryLock(const std::string& dir) {
    fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd_ < 0) throw RuntimeError("cannot lock folder '" + dir + "': " + errno_text(errno));
    while (::flock(fd_, LOCK_EX) != 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        ::close(fd_);
        throw RuntimeError("cannot lock folder '" + dir + "': " + errno_text(err));
    }
}

DirectoryLock::~DirectoryLock() {
    if (fd_ >= 0) ::close(fd_);  // closing the descriptor releases the lock
}

}  // namespace multilora::io
