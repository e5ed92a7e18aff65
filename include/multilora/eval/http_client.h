// A minimal HTTP POST client over libcurl, one per thread (a handle is not shared between threads).
// Loopback addresses never go through a proxy; other URLs follow libcurl's usual proxy variables.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace multilora::eval {

struct HttpResponse {
    long status = 0;  // 0 when no HTTP answer arrived
    std::string body;
    std::map<std::string, std::string> headers;  // lower-case names; the final response's headers only
    int transport_error = 0;                     // CURLcode; 0 when an HTTP answer arrived
    bool connect_failed = false;                 // could not resolve or connect at all
    std::string error;                           // libcurl's message for transport errors
    double seconds = 0;
};

class HttpClient {
public:
    HttpClient();
    ~HttpClient();
    HttpClient(const HttpClient&) = delete;
    HttpClient& operator=(const HttpClient&) = delete;

    HttpResponse post(const std::string& url, const std::vector<std::string>& headers, const std::string& body,
                      double timeout_s, double connect_timeout_s);

private:
    void* curl_ = nullptr;
};

// Parses an HTTP-date (RFC 7231) to seconds since the epoch; -1 when it is not one.
long long parse_http_date(const std::string& text);

}  // namespace multilora::eval
