// Test helpers for `multilora evaluate`: a loopback HTTP server that answers like an OpenAI-compatible
// chat-completions endpoint (started by the test on 127.0.0.1 and an ephemeral port), a batch output folder
// builder, and a runner for the binary with environment variables.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "multilora/io/png_writer.h"
#include "test_support.h"

namespace multilora::test {

struct HttpRequest {
    std::string method, path;
    std::map<std::string, std::string> headers;  // lower-case names
    std::string body;
    std::chrono::steady_clock::time_point received;
};

struct Reply {
    enum Action { kRespond, kDropBeforeResponse, kDropMidBody };
    int status = 200;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    Action action = kRespond;
    int delay_ms = 0;
};

// A real-format chat completion whose message content is `content`.
inline std::string chat_completion(const std::string& content) {
    nlohmann::json j = {
        {"id", "chatcmpl-loopback"},
        {"object", "chat.completion"},
        {"created", 1700000000},
        {"model", "gpt-4o-2024-08-06"},
        {"choices",
         {{{"index", 0},
           {"message", {{"role", "assistant"}, {"content", content}, {"refusal", nullptr}}},
           {"logprobs", nullptr},
           {"finish_reason", "stop"}}}},
        {"usage", {{"prompt_tokens", 1500}, {"completion_tokens", 300}, {"total_tokens", 1800}}},
        {"system_fingerprint", "fp_loopback"}};
    return j.dump();
}

// An answer like a real judge's: reasoning, then the score block.
inline std::string judge_answer(double c1, double i1, double c2, double i2) {
    auto f = [](double v) {
        char b[16];
        std::snprintf(b, sizeof b, "%g", v);
        return std::string(b);
    };
    return "Let me compare the two images step by step.\n\n**Assessment of the first image:**\nThe character is "
           "recognisable; one feature is off.\n\n**Assessment of the second image:**\nThe clothing is depicted "
           "well, lighting is flat.\n\n**Scores:**\n**Image 1:** Composition Quality: " +
           f(c1) + "/10, Image Quality: " + f(i1) + "/10\n**Image 2:** Composition Quality: " + f(c2) +
           "/10, Image Quality: " + f(i2) + "/10\n\nOverall, the images differ mainly in composition.";
}

inline Reply ok_reply(const std::string& content) {
    Reply r;
    r.body = chat_completion(content);
    return r;
}

class LoopbackServer {
public:
    using Handler = std::function<Reply(const HttpRequest&, int index)>;

    explicit LoopbackServer(Handler handler) : handler_(std::move(handler)) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;  // ephemeral
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, 64) != 0) {
            std::perror("loopback server");
            std::abort();
        }
        socklen_t len = sizeof addr;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
        port_ = ntohs(addr.sin_port);
        acceptor_ = std::thread([this] { accept_loop(); });
    }

    ~LoopbackServer() {
        stop_ = true;
        acceptor_.join();
        ::close(fd_);
        std::vector<std::thread> workers;
        {
            std::lock_guard<std::mutex> lock(mu_);
            workers.swap(workers_);
        }
        for (auto& t : workers) t.join();
    }

    int port() const { return port_; }
    std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
    int count() const { return count_.load(); }
    int max_in_flight() const { return max_in_flight_.load(); }
    std::vector<HttpRequest> requests() const {
        std::lock_guard<std::mutex> lock(mu_);
        return requests_;
    }

private:
    void accept_loop() {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            int c = ::accept(fd_, nullptr, nullptr);
            if (c < 0) continue;
            std::lock_guard<std::mutex> lock(mu_);
            workers_.emplace_back([this, c] { serve(c); });
        }
    }

    static bool read_request(int c, HttpRequest& req) {
        timeval tv{10, 0};
        ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        std::string data;
        char buf[65536];
        size_t header_end = std::string::npos;
        while (header_end == std::string::npos) {
            ssize_t n = ::recv(c, buf, sizeof buf, 0);
            if (n <= 0) return false;
            data.append(buf, static_cast<size_t>(n));
            header_end = data.find("\r\n\r\n");
        }
        std::string head = data.substr(0, header_end);
        size_t pos = head.find("\r\n");
        std::string first = head.substr(0, pos);
        auto sp1 = first.find(' '), sp2 = first.find(' ', sp1 + 1);
        req.method = first.substr(0, sp1);
        req.path = first.substr(sp1 + 1, sp2 - sp1 - 1);
        while (pos != std::string::npos && pos < head.size()) {
            size_t next = head.find("\r\n", pos + 2);
            std::string line = head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
            auto colon = line.find(':');
            if (colon != std::string::npos) {
                std::string name = line.substr(0, colon);
                for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
                size_t v = line.find_first_not_of(' ', colon + 1);
                req.headers[name] = v == std::string::npos ? "" : line.substr(v);
            }
            pos = next;
        }
        size_t want = req.headers.count("content-length") ? std::stoul(req.headers["content-length"]) : 0;
        req.body = data.substr(header_end + 4);
        while (req.body.size() < want) {
            ssize_t n = ::recv(c, buf, sizeof buf, 0);
            if (n <= 0) return false;
            req.body.append(buf, static_cast<size_t>(n));
        }
        return true;
    }

    static void send_all(int c, const std::string& s) {
        size_t off = 0;
        while (off < s.size()) {
            ssize_t n = ::send(c, s.data() + off, s.size() - off, MSG_NOSIGNAL);
            if (n <= 0) return;
            off += static_cast<size_t>(n);
        }
    }

    void serve(int c) {
        HttpRequest req;
        if (!read_request(c, req)) {
            ::close(c);
            return;
        }
        req.received = std::chrono::steady_clock::now();
        int index;
        {
            std::lock_guard<std::mutex> lock(mu_);
            index = static_cast<int>(requests_.size());
            requests_.push_back(req);
        }
        int now = ++in_flight_;
        int prev = max_in_flight_.load();
        while (now > prev && !max_in_flight_.compare_exchange_weak(prev, now)) {
        }
        Reply r = handler_(req, index);
        if (r.delay_ms) std::this_thread::sleep_for(std::chrono::milliseconds(r.delay_ms));
        --in_flight_;
        ++count_;
        if (r.action == Reply::kDropBeforeResponse) {
            ::shutdown(c, SHUT_RDWR);
            ::close(c);
            return;
        }
        std::string reason = r.status == 200 ? "OK" : r.status == 429 ? "Too Many Requests" : "Status";
        std::string head = "HTTP/1.1 " + std::to_string(r.status) + " " + reason +
                           "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
                           std::to_string(r.body.size()) + "\r\n";
        for (const auto& [k, v] : r.headers) head += k + ": " + v + "\r\n";
        head += "\r\n";
        if (r.action == Reply::kDropMidBody) {
            send_all(c, head + r.body.substr(0, r.body.size() / 3));
            ::shutdown(c, SHUT_RDWR);
            ::close(c);
            return;
        }
        send_all(c, head + r.body);
        ::shutdown(c, SHUT_WR);
        // Let the client read everything before the socket goes away.
        char buf[256];
        timeval tv{2, 0};
        ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        while (::recv(c, buf, sizeof buf, 0) > 0) {
        }
        ::close(c);
    }

    Handler handler_;
    int fd_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread acceptor_;
    mutable std::mutex mu_;
    std::vector<std::thread> workers_;
    std::vector<HttpRequest> requests_;
    std::atomic<int> count_{0}, in_flight_{0}, max_in_flight_{0};
};

// A port with nothing listening (bound, then closed).
inline int closed_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(fd);
    return ntohs(addr.sin_port);
}

// ---- batch output folders ----

struct FakeSet {
    std::string style;
    std::vector<std::string> ids;
    std::vector<std::string> methods;
};

inline std::string join_ids(const std::vector<std::string>& ids) {
    std::string s;
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? "_" : "") + ids[i];
    return s;
}

// A small PNG whose pixels depend on `seed` (so that every image has its own bytes and hash).
inline void write_test_png(const std::filesystem::path& p, int seed, int w = 24, int h = 20) {
    std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            uint8_t* px = &rgb[(static_cast<size_t>(y) * w + x) * 3];
            px[0] = static_cast<uint8_t>(x * 9 + seed * 31);
            px[1] = static_cast<uint8_t>(y * 11 + seed * 17);
            px[2] = static_cast<uint8_t>((x ^ y) * 5 + seed * 7);
        }
    std::filesystem::create_directories(p.parent_path());
    io::write_png(p.string(), rgb.data(), w, h);
}

// Writes DIR/{style}/{k}_elements/{method}_{ids}.png + .json, sheets, and DIR/batch.jsonl (outputs relative
// to DIR). Returns the batch.jsonl lines written.
inline std::vector<nlohmann::json> make_run(const std::filesystem::path& dir, const std::vector<FakeSet>& sets,
                                            bool write_log = true) {
    std::vector<nlohmann::json> lines;
    int seed = 1;
    std::string log;
    for (const auto& s : sets) {
        const int k = static_cast<int>(s.ids.size());
        std::filesystem::path sub = std::filesystem::path(s.style) / (std::to_string(k) + "_elements");
        std::string prompt = "masterpiece, best quality, " + join_ids(s.ids);
        for (const auto& m : s.methods) {
            std::filesystem::path rel = sub / (m + "_" + join_ids(s.ids) + ".png");
            write_test_png(dir / rel, seed++);
            nlohmann::json manifest = {{"prompt", prompt}, {"method", m}, {"seed", 111}};
            std::ofstream(std::filesystem::path(dir / rel).replace_extension(".json")) << manifest.dump(2);
            nlohmann::json line = {{"style", s.style}, {"k", k},           {"method", m},
                                   {"lora_ids", s.ids}, {"prompt", prompt}, {"output", rel.string()}};
            lines.push_back(line);
            log += line.dump() + "\n";
        }
        write_test_png(dir / sub / ("sheet_" + join_ids(s.ids) + ".png"), 99, 48, 20);
    }
    if (write_log) std::ofstream(dir / "batch.jsonl") << log;
    return lines;
}

inline std::string read_text(const std::filesystem::path& p) { return read_bytes(p); }

// Runs `env -u OPENAI_API_KEY ENV multilora ARGS` through the shell (stdout and stderr together).
inline CommandResult run_env(const std::string& env, const std::string& args) {
    std::string cmd = "env -u OPENAI_API_KEY " + env + " " + std::string(ML_BINARY_PATH) + " " + args + " 2>&1";
    CommandResult r;
    FILE* pipe = popen(cmd.c_str(), "r");
    if (!pipe) return r;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) r.output.append(buf, n);
    int status = pclose(pipe);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

// Starts the same in the background with output to `log`; returns the binary's pid.
inline pid_t spawn_env(const std::string& env, const std::string& args, const std::filesystem::path& log) {
    std::string cmd = "exec env -u OPENAI_API_KEY " + env + " " + std::string(ML_BINARY_PATH) + " " + args + " >" +
                      log.string() + " 2>&1";
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
        _exit(127);
    }
    return pid;
}

}  // namespace multilora::test
