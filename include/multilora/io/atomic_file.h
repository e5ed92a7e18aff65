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

}  // namespace multilora::io
