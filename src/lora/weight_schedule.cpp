#include "multilora/lora/weight_schedule.h"

#include <cmath>
#include <cstdlib>

#include "multilora/util/error.h"
#include "multilora/util/strings.h"

namespace multilora::lora {
namespace {

double parse_number(const std::string& text, const std::string& where, const std::string& what) {
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || !std::isfinite(v))
        throw UsageError(where + ": " + what + " \"" + text + "\" is not a number");
    return v;
}

std::string number_text(double v) {
    std::string s = nlohmann::json(v).dump();
    if (ends_with(s, ".0")) s.resize(s.size() - 2);
    return s;
}

WeightKeyframe parse_keyframe(const std::string& text, const std::string& where) {
    const auto at = text.find('@');
    if (at == std::string::npos || text.find('@', at + 1) != std::string::npos)
        throw UsageError(where + ": keyframe \"" + text + "\" is not WEIGHT@FRACTION (e.g. 0.8@0)");
    WeightKeyframe k;
    k.weight = parse_number(text.substr(0, at), where, "weight");
    k.at = parse_number(text.substr(at + 1), where, "fraction");
    if (k.at < 0.0 || k.at > 1.0)
        throw UsageError(where + ": keyframe fraction " + text.substr(at + 1) + " is outside 0..1");
    return k;
}

}  // namespace

bool looks_like_schedule(const std::string& text) { return text.find('@') != std::string::npos; }

WeightSchedule parse_weight_schedule(const std::string& text, const std::string& where) {
    WeightSchedule s;
    std::string keys = text;
    const auto colon = text.rfind(':');
    if (colon != std::string::npos) {
        const std::string mode = text.substr(colon + 1);
        if (mode == "linear") s.interpolation = Interpolation::Linear;
        else if (mode != "step")
            throw UsageError(where + ": unknown interpolation \"" + mode + "\" (choose step or linear)");
        keys = text.substr(0, colon);
    }
    for (const std::string& one : split(keys, ',')) {
        s.keys.push_back(parse_keyframe(one, where));
        if (s.keys.size() > 1 && !(s.keys.back().at > s.keys[s.keys.size() - 2].at))
            throw UsageError(where + ": keyframe fractions must increase (" + one + " follows " +
                             number_text(s.keys[s.keys.size() - 2].at) + ")");
    }
    return s;
}

double WeightSchedule::at(double fraction) const {
    if (keys.empty()) return 1.0;
    if (fraction <= keys.front().at) return keys.front().weight;
    if (fraction >= keys.back().at) return keys.back().weight;
    size_t next = 1;
    while (keys[next].at <= fraction) ++next;  // keys[next - 1].at <= fraction < keys[next].at
    const WeightKeyframe& a = keys[next - 1];
    if (interpolation == Interpolation::Step) return a.weight;
    const WeightKeyframe& b = keys[next];
    return a.weight + (b.weight - a.weight) * (fraction - a.at) / (b.at - a.at);
}

double WeightSchedule::at_step(int step, int steps) const {
    return at(steps > 0 ? static_cast<double>(step) / static_cast<double>(steps) : 0.0);
}

std::string WeightSchedule::text() const {
    std::vector<std::string> parts;
    for (const auto& k : keys) parts.push_back(number_text(k.weight) + "@" + number_text(k.at));
    return join(parts, ",") + (interpolation == Interpolation::Linear ? ":linear" : "");
}

nlohmann::json WeightSchedule::to_json() const {
    nlohmann::json ks = nlohmann::json::array();
    for (const auto& k : keys) ks.push_back({{"weight", k.weight}, {"at", k.at}});
    return {{"keyframes", ks}, {"interpolation", interpolation == Interpolation::Linear ? "linear" : "step"}};
}

}  // namespace multilora::lora
