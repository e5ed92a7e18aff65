// The judge: any OpenAI-compatible chat-completions endpoint.
//
// Request (POST {api_base}/chat/completions, Authorization: Bearer KEY):
//   {"model": M, "messages": [{"role": "user", "content": [
//        {"type": "text", "text": PROMPT},
//        {"type": "image_url", "image_url": {"url": "data:image/png;base64,…"}},   image 1
//        {"type": "image_url", "image_url": {"url": "data:image/png;base64,…"}}]}], image 2
//    "max_tokens": N, "temperature": T}
// Answer: choices[0].message.content (a string, or a list of {"type": "text", "text"} parts).
//
// Transport policy (JudgeClient::send):
//   - 429, 408, 409 and 5xx: retried up to http_retries times with exponential backoff and jitter,
//     wait = max(Retry-After, min(max, base · 2^n) · U(0.5, 1)); Retry-After is read from `retry-after-ms`
//     (OpenAI's), else `Retry-After` (seconds or an HTTP date), capped at retry_after_max_s.
//   - dropped connections, timeouts, resets: retried the same way;
//   - cannot connect / resolve: retried at most min(http_retries, 3) times, then fatal (the run stops);
//   - 401 / 403 (key refused) and 404 (wrong URL or model): fatal at once;
//   - other 4xx: this request fails (recorded), the run goes on.
// The API key is sent in the Authorization header only; every text this class returns has it redacted.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "multilora/eval/http_client.h"

namespace multilora::eval {

struct JudgeSettings {
    std::string api_base = "https://api.openai.com/v1";
    std::string model = "gpt-4o";
    double temperature = 1.0;
    int max_tokens = 2048;
    double timeout_s = 180;
    double connect_timeout_s = 20;
    int http_retries = 8;
    double backoff_base_s = 1.0;
    double backoff_max_s = 60.0;
    double retry_after_max_s = 600.0;
};

// api_base + "/chat/completions" (unless api_base already ends with it).
std::string chat_completions_url(const std::string& api_base);

// The request body. png1/png2 are the images' file bytes.
nlohmann::json build_chat_request(const JudgeSettings& s, const std::string& prompt, const std::string& png1,
                                  const std::string& png2);

// The request as logs and dry runs store it: each image data URL is replaced by
// "data:image/png;base64,<N bytes of base64 omitted>" and the image's path and sha256 are added beside it.
nlohmann::json elide_request_images(nlohmann::json request, const std::vector<std::string>& paths,
                                    const std::vector<std::string>& sha256s);

struct ChatAnswer {
    bool ok = false;
    std::string text;
    std::string finish_reason;
    nlohmann::json usage;  // null when absent
    std::string error;     // why no answer text could be read
};
ChatAnswer extract_chat_answer(const std::string& body);

// Seconds from retry-after-ms / Retry-After; nullopt when absent or unreadable. `now` is for HTTP dates.
std::optional<double> retry_after_seconds(const std::map<std::string, std::string>& headers, long long now_epoch_s);

// min(max, base · 2^retry) · (0.5 + 0.5 · u), u in [0, 1].
double backoff_seconds(int retry, double base, double max, double u);

// The error message an API error body carries ({"error": {"message"}}), else the body's start.
std::string api_error_message(const std::string& body);

struct HttpAttempt {
    int index = 0;  // 1-based try number within one send()
    long status = 0;
    std::string error;     // transport error or API error message (redacted)
    std::string body;      // response body (redacted; cut to 64 KiB)
    double seconds = 0;    // request duration
    double wait_s = 0;     // wait before the next try (0 for the last)
    std::optional<double> retry_after;
};

enum class SendStatus { kOk, kFailed, kFatal, kCancelled };

struct SendResult {
    SendStatus status = SendStatus::kFailed;
    std::string body;   // the 2xx response body (redacted)
    std::string error;  // for kFailed / kFatal (redacted)
    std::vector<HttpAttempt> attempts;
};

class JudgeClient {
public:
    JudgeClient(JudgeSettings settings, std::string api_key);
    // Sends one request body with the transport policy above. `cancel` (optional) stops waiting early.
    SendResult send(const std::string& body, const std::atomic<bool>* cancel = nullptr);
    const JudgeSettings& settings() const { return s_; }
    std::string redact(const std::string& text) const;

private:
    JudgeSettings s_;
    std::string key_;
    std::string url_;
    HttpClient http_;
    std::mt19937_64 rng_;
};

}  // namespace multilora::eval
