#include "multilora/eval/judge_client.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <thread>

#include "multilora/eval/text_util.h"

using nlohmann::json;

namespace multilora::eval {

std::string chat_completions_url(const std::string& api_base) {
    std::string base = api_base;
    while (!base.empty() && base.back() == '/') base.pop_back();
    const std::string tail = "/chat/completions";
    if (base.size() >= tail.size() && base.compare(base.size() - tail.size(), tail.size(), tail) == 0) return base;
    return base + tail;
}

json build_chat_request(const JudgeSettings& s, const std::string& prompt, const std::string& png1,
                        const std::string& png2) {
    json content = json::array();
    content.push_back({{"type", "text"}, {"text", prompt}});
    for (const std::string* png : {&png1, &png2})
        content.push_back(
            {{"type", "image_url"}, {"image_url", {{"url", "data:image/png;base64," + base64_encode(*png)}}}});
    return json{{"model", s.model},
                {"messages", json::array({json{{"role", "user"}, {"content", content}}})},
                {"max_tokens", s.max_tokens},
                {"temperature", s.temperature}};
}

json elide_request_images(json request, const std::vector<std::string>& paths, const std::vector<std::string>& shas) {
    size_t n = 0;
    for (auto& msg : request["messages"]) {
        if (!msg.contains("content") || !msg["content"].is_array()) continue;
        for (auto& part : msg["content"]) {
            if (part.value("type", "") != "image_url") continue;
            std::string url = part["image_url"].value("url", "");
            auto comma = url.find(',');
            size_t len = comma == std::string::npos ? url.size() : url.size() - comma - 1;
            part["image_url"]["url"] = url.substr(0, comma == std::string::npos ? 0 : comma + 1) + "<" +
                                       std::to_string(len) + " bytes of base64 omitted>";
            if (n < paths.size()) part["image_url"]["x_multilora_path"] = paths[n];
            if (n < shas.size()) part["image_url"]["x_multilora_sha256"] = shas[n];
            ++n;
        }
    }
    return request;
}

ChatAnswer extract_chat_answer(const std::string& body) {
    ChatAnswer a;
    json j = json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        a.error = "the response is not a JSON object";
        return a;
    }
    if (j.contains("usage")) a.usage = j["usage"];
    if (j.contains("error")) {
        a.error = "the response is an error: " + api_error_message(body);
        return a;
    }
    if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) {
        a.error = "the response has no choices";
        return a;
    }
    const json& choice = j["choices"][0];
    if (choice.contains("finish_reason") && choice["finish_reason"].is_string())
        a.finish_reason = choice["finish_reason"].get<std::string>();
    if (!choice.is_object() || !choice.contains("message") || !choice["message"].is_object()) {
        a.error = "choices[0] has no message";
        return a;
    }
    const json& msg = choice["message"];
    const json content = msg.contains("content") ? msg["content"] : json();
    if (content.is_string()) {
        a.text = content.get<std::string>();
    } else if (content.is_array()) {
        for (const auto& part : content)
            if (part.is_object() && part.value("type", "") == "text" && part.contains("text") && part["text"].is_string())
                a.text += part["text"].get<std::string>();
    } else {
        if (msg.contains("refusal") && msg["refusal"].is_string())
            a.error = "the judge refused: " + msg["refusal"].get<std::string>();
        else
            a.error = "choices[0].message.content is empty";
        return a;
    }
    if (a.text.empty()) {
        a.error = "choices[0].message.content is empty";
        return a;
    }
    a.ok = true;
    return a;
}

std::optional<double> retry_after_seconds(const std::map<std::string, std::string>& headers, long long now) {
    auto ms = headers.find("retry-after-ms");
    if (ms != headers.end()) {
        try {
            size_t used = 0;
            double v = std::stod(ms->second, &used);
            if (used > 0 && std::isfinite(v) && v >= 0) return v / 1000.0;
        } catch (...) {
        }
    }
    auto it = headers.find("retry-after");
    if (it == headers.end()) return std::nullopt;
    const std::string& v = it->second;
    if (!v.empty() && std::all_of(v.begin(), v.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; })) {
        try {
            return std::stod(v);
        } catch (...) {
            return std::nullopt;
        }
    }
    long long when = parse_http_date(v);
    if (when < 0) return std::nullopt;
    return static_cast<double>(std::max(0LL, when - now));
}

double backoff_seconds(int retry, double base, double max, double u) {
    double d = base * std::pow(2.0, std::min(retry, 30));
    d = std::min(d, max);
    return d * (0.5 + 0.5 * std::clamp(u, 0.0, 1.0));
}

std::string api_error_message(const std::string& body) {
    json j = json::parse(body, nullptr, false);
    if (j.is_object() && j.contains("error")) {
        const json& e = j["error"];
        if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"].get<std::string>();
        if (e.is_string()) return e.get<std::string>();
    }
    std::string s = body.substr(0, 300);
    for (char& c : s)
        if (c == '\n' || c == '\r') c = ' ';
    return s;
}

JudgeClient::JudgeClient(JudgeSettings settings, std::string api_key)
    : s_(std::move(settings)), key_(std::move(api_key)), url_(chat_completions_url(s_.api_base)),
      rng_(std::random_device{}()) {}

std::string JudgeClient::redact(const std::string& text) const { return eval::redact(text, key_); }

SendResult JudgeClient::send(const std::string& body, const std::atomic<bool>* cancel) {
    SendResult result;
    std::vector<std::string> headers = {"Content-Type: application/json", "Accept: application/json"};
    if (!key_.empty()) headers.push_back("Authorization: Bearer " + key_);
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    const int max_tries = std::max(0, s_.http_retries) + 1;
    const int max_connect_tries = std::min(std::max(0, s_.http_retries), 3) + 1;
    for (int attempt = 1;; ++attempt) {
        if (cancel && cancel->load()) {
            result.status = SendStatus::kCancelled;
            result.error = "cancelled";
            return result;
        }
        HttpResponse r = http_.post(url_, headers, body, s_.timeout_s, s_.connect_timeout_s);
        HttpAttempt a;
        a.index = attempt;
        a.status = r.status;
        a.seconds = r.seconds;
        a.body = redact(r.body.size() > 65536 ? r.body.substr(0, 65536) : r.body);
        bool retriable = false;
        int limit = max_tries;
        std::string failure;
        if (r.transport_error) {
            a.error = redact(r.error);
            retriable = true;
            if (r.connect_failed) limit = max_connect_tries;
            failure = (r.connect_failed ? "cannot reach the judge endpoint " : "no answer from the judge endpoint ") +
                      redact(url_) + ": " + a.error;
        } else if (r.status >= 200 && r.status < 300) {
            result.attempts.push_back(a);
            result.status = SendStatus::kOk;
            result.body = a.body.size() == r.body.size() ? a.body : redact(r.body);
            return result;
        } else {
            a.error = redact(api_error_message(r.body));
            failure = "HTTP " + std::to_string(r.status) + " from " + redact(url_) + ": " + a.error;
            if (r.status == 429 || r.status == 408 || r.status == 409 || r.status >= 500) {
                retriable = true;
                long long now = std::chrono::duration_cast<std::chrono::seconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count();
                a.retry_after = retry_after_seconds(r.headers, now);
            } else if (r.status == 401 || r.status == 403) {
                result.attempts.push_back(a);
                result.status = SendStatus::kFatal;
                result.error = "the judge endpoint refused the API key (HTTP " + std::to_string(r.status) +
                               " from " + redact(url_) + "): " + a.error;
                return result;
            } else if (r.status == 404) {
                result.attempts.push_back(a);
                result.status = SendStatus::kFatal;
                result.error = failure + " (check --api-base and --judge-model)";
                return result;
            }
        }
        if (!retriable || attempt >= limit) {
            result.attempts.push_back(a);
            result.status = r.connect_failed ? SendStatus::kFatal : SendStatus::kFailed;
            result.error = failure + (attempt > 1 ? " (" + std::to_string(attempt) + " tries)" : "");
            return result;
        }
        double wait = backoff_seconds(attempt - 1, s_.backoff_base_s, s_.backoff_max_s, unit(rng_));
        if (a.retry_after) wait = std::max(wait, std::min(*a.retry_after, s_.retry_after_max_s));
        a.wait_s = wait;
        result.attempts.push_back(a);
        const auto until = std::chrono::steady_clock::now() +
                           std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                               std::chrono::duration<double>(wait));
        while (std::chrono::steady_clock::now() < until) {
            if (cancel && cancel->load()) break;
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
            std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds(20)) + std::chrono::microseconds(100));
        }
    }
}

}  // namespace multilora::eval
