#include "multilora/eval/http_client.h"

#include <curl/curl.h>

#include <chrono>
#include <mutex>

#include "multilora/util/clock.h"
#include "multilora/util/error.h"
#include "multilora/util/version.h"

namespace multilora::eval {

namespace {

void global_init() {
    static std::once_flag once;
    std::call_once(once, [] {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) throw RuntimeError("libcurl initialisation failed");
    });
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
    static_cast<std::string*>(user)->append(data, size * n);
    return size * n;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
    auto* headers = static_cast<std::map<std::string, std::string>*>(user);
    std::string line(data, size * n);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    if (line.rfind("HTTP/", 0) == 0) {
        headers->clear();  // a new response (after 100 Continue or a redirect)
        return size * n;
    }
    auto colon = line.find(':');
    if (colon == std::string::npos) return size * n;
    std::string name = line.substr(0, colon);
    for (char& c : name)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    size_t start = line.find_first_not_of(" \t", colon + 1);
    (*headers)[name] = start == std::string::npos ? "" : line.substr(start);
    return size * n;
}

}  // namespace

HttpClient::HttpClient() {
    global_init();
    curl_ = curl_easy_init();
    if (!curl_) throw RuntimeError("libcurl: cannot create a handle");
}

HttpClient::~HttpClient() {
    if (curl_) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

HttpResponse HttpClient::post(const std::string& url, const std::vector<std::string>& headers, const std::string& body,
                              double timeout_s, double connect_timeout_s) {
    CURL* c = static_cast<CURL*>(curl_);
    curl_easy_reset(c);
    HttpResponse r;
    char errbuf[CURL_ERROR_SIZE] = {0};
    struct curl_slist* list = nullptr;
    for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
    list = curl_slist_append(list, "Expect:");  // no 100-continue round trip
    const std::string agent = std::string("multilora/") + multilora::version();
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_USERAGENT, agent.c_str());
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r.headers);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_s * 1000));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect_timeout_s * 1000));
    curl_easy_setopt(c, CURLOPT_NOPROXY, "127.0.0.1,localhost,::1");
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    auto t0 = std::chrono::steady_clock::now();
    CURLcode code = curl_easy_perform(c);
    r.seconds = seconds_since(t0);
    curl_slist_free_all(list);
    if (code != CURLE_OK) {
        r.transport_error = static_cast<int>(code);
        r.connect_failed = code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST ||
                           code == CURLE_COULDNT_RESOLVE_PROXY;
        r.error = errbuf[0] ? std::string(errbuf) : std::string(curl_easy_strerror(code));
        while (!r.error.empty() && (r.error.back() == '\n' || r.error.back() == ' ')) r.error.pop_back();
        r.status = 0;
        return r;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    return r;
}

long long parse_http_date(const std::string& text) {
    time_t t = curl_getdate(text.c_str(), nullptr);
    return t < 0 ? -1 : static_cast<long long>(t);
}

}  // namespace multilora::eval
