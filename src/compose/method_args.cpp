#include "multilora/compose/method_args.h"

#include <cmath>
#include <cstdlib>

#include "multilora/util/error.h"
#include "multilora/util/strings.h"

namespace multilora::compose {
namespace {

std::string number_text(double v) {
    if (std::floor(v) == v && std::fabs(v) < 1e15) return std::to_string(static_cast<long long>(v));
    return nlohmann::json(v).dump();
}

}  // namespace

nlohmann::json ParamSpec::check(const nlohmann::json& value, const std::string& where) const {
    if (type == Type::Choice) {
        if (!value.is_string()) throw UsageError(where + ": expected one of " + join(choices, ", ") + ", got " + value.dump());
        const std::string v = value.get<std::string>();
        for (const auto& c : choices)
            if (c == v) return value;
        std::string hint = closest(v, choices);
        throw UsageError(where + ": unknown value \"" + v + "\" (choose " + join(choices, ", ") + ")" +
                         (hint.empty() ? "" : "; did you mean \"" + hint + "\"?"));
    }
    const bool integral = value.is_number_integer() || value.is_number_unsigned();
    if (!value.is_number() || (type == Type::Int && !integral))
        throw UsageError(where + ": expected " + std::string(type == Type::Int ? "an integer" : "a number") + ", got " +
                         value.dump());
    const double v = value.get<double>();
    if (!(v >= min && v <= max))
        throw UsageError(where + ": " + value.dump() + " is out of range (" + number_text(min) + ".." + number_text(max) + ")");
    return value;
}

nlohmann::json ParamSpec::parse(const std::string& text, const std::string& where) const {
    if (type == Type::Choice) return check(nlohmann::json(text), where);
    char* end = nullptr;
    if (type == Type::Int) {
        const long long v = std::strtoll(text.c_str(), &end, 10);
        if (text.empty() || *end != '\0') throw UsageError(where + ": expected an integer, got \"" + text + "\"");
        return check(nlohmann::json(v), where);
    }
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || !std::isfinite(v)) throw UsageError(where + ": expected a number, got \"" + text + "\"");
    return check(nlohmann::json(v), where);
}

std::string ParamSpec::describe() const {
    if (type == Type::Choice) return join(choices, "|") + ", default " + default_value.get<std::string>();
    return std::string(type == Type::Int ? "int " : "real ") + number_text(min) + ".." + number_text(max) + ", default " +
           default_value.dump();
}

namespace {
ParamSpec base_param(std::string name, ParamSpec::Type type, nlohmann::json default_value, std::string help) {
    ParamSpec p;
    p.name = std::move(name);
    p.type = type;
    p.default_value = std::move(default_value);
    p.help = std::move(help);
    return p;
}
}  // namespace

ParamSpec int_param(std::string name, int default_value, int min, int max, std::string help) {
    ParamSpec p = base_param(std::move(name), ParamSpec::Type::Int, default_value, std::move(help));
    p.min = min;
    p.max = max;
    return p;
}

ParamSpec real_param(std::string name, double default_value, double min, double max, std::string help) {
    ParamSpec p = base_param(std::move(name), ParamSpec::Type::Real, default_value, std::move(help));
    p.min = min;
    p.max = max;
    return p;
}

ParamSpec choice_param(std::string name, std::string default_value, std::vector<std::string> choices,
                       std::string help) {
    ParamSpec p = base_param(std::move(name), ParamSpec::Type::Choice, std::move(default_value), std::move(help));
    p.choices = std::move(choices);
    return p;
}

MethodArgs::MethodArgs(const std::vector<ParamSpec>& params) : params_(params) {
    for (const auto& p : params_) values_[p.name] = p.default_value;
}

const ParamSpec& MethodArgs::spec(const std::string& name, const std::string& where) const {
    for (const auto& p : params_)
        if (p.name == name) return p;
    std::vector<std::string> names;
    for (const auto& p : params_) names.push_back(p.name);
    if (names.empty()) throw UsageError(where + ": this method takes no parameters (got \"" + name + "\")");
    std::string hint = closest(name, names);
    throw UsageError(where + ": unknown parameter \"" + name + "\" (this method takes " + join(names, ", ") + ")" +
                     (hint.empty() ? "" : "; did you mean \"" + hint + "\"?"));
}

void MethodArgs::set_text(const std::string& name, const std::string& value, const std::string& where) {
    values_[name] = spec(name, where).parse(value, where);
}

void MethodArgs::set_json(const std::string& name, const nlohmann::json& value, const std::string& where) {
    values_[name] = spec(name, where).check(value, where);
}

int MethodArgs::get_int(const std::string& name) const { return values_.at(name).get<int>(); }
double MethodArgs::get_real(const std::string& name) const { return values_.at(name).get<double>(); }
std::string MethodArgs::get_string(const std::string& name) const { return values_.at(name).get<std::string>(); }

nlohmann::json MethodArgs::to_json() const {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [k, v] : values_) j[k] = v;
    return j;
}

std::pair<std::string, std::string> split_assignment(const std::string& text, const std::string& where) {
    const auto eq = text.find('=');
    if (eq == std::string::npos || eq == 0)
        throw UsageError(where + ": expected NAME=VALUE, got \"" + text + "\"");
    return {text.substr(0, eq), text.substr(eq + 1)};
}

}  // namespace multilora::compose
