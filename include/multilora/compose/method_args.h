// A composition method's parameters: their typed descriptions (name, type, default, range or choices,
// aliases) and the validated key/value map a method is built with. Values come from `--method-arg K=V`,
// the old per-method flags (`--switch-interval` ...), or a batch config's JSON.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace multilora::compose {

struct ParamSpec {
    enum class Type { Int, Real, Choice };
    std::string name;  // as in --method-arg NAME=VALUE and a config's method_args
    Type type = Type::Int;
    std::string help;
    nlohmann::json default_value;      // a number, or one of `choices`
    double min = 0, max = 0;           // Int / Real: the allowed range (inclusive)
    std::vector<std::string> choices;  // Choice
    std::string cli_flag;              // the older flag that sets it ("--switch-interval"), or empty
    std::string config_key;            // the top-level batch-config key that sets it, or empty
    // Whether the value changes the image (recorded in batch settings, and a change makes finished
    // images stale) or only how it is computed (e.g. how many rows run per forward).
    bool affects_output = true;

    // The value a text gives ("5", "paper"), checked against type, range and choices; throws UsageError
    // naming `where` (e.g. "--method-arg tau").
    nlohmann::json parse(const std::string& text, const std::string& where) const;
    // The same for a JSON value.
    nlohmann::json check(const nlohmann::json& value, const std::string& where) const;
    // "int 1..1000, default 5" / "paper|reference, default paper".
    std::string describe() const;

    // Builder steps for the optional fields: int_param("tau", ...).alias_flag("--switch-interval").
    ParamSpec& alias_flag(std::string flag) { cli_flag = std::move(flag); return *this; }
    ParamSpec& alias_config_key(std::string key) { config_key = std::move(key); return *this; }
    ParamSpec& output_neutral() { affects_output = false; return *this; }
};

// A parameter of each type, with its default, range or choices, and help text.
ParamSpec int_param(std::string name, int default_value, int min, int max, std::string help);
ParamSpec real_param(std::string name, double default_value, double min, double max, std::string help);
ParamSpec choice_param(std::string name, std::string default_value, std::vector<std::string> choices,
                       std::string help);

// Validated values for every parameter of one method (defaults filled in).
class MethodArgs {
public:
    MethodArgs() = default;
    // Starts from the defaults of `params`.
    explicit MethodArgs(const std::vector<ParamSpec>& params);

    // Sets a parameter from text or JSON (throws UsageError for an unknown name, with a suggestion, or a bad
    // value).
    void set_text(const std::string& name, const std::string& value, const std::string& where);
    void set_json(const std::string& name, const nlohmann::json& value, const std::string& where);

    int get_int(const std::string& name) const;
    double get_real(const std::string& name) const;
    std::string get_string(const std::string& name) const;
    bool has(const std::string& name) const { return values_.count(name) > 0; }
    const std::map<std::string, nlohmann::json>& values() const { return values_; }
    const std::vector<ParamSpec>& params() const { return params_; }
    nlohmann::json to_json() const;

private:
    const ParamSpec& spec(const std::string& name, const std::string& where) const;
    std::vector<ParamSpec> params_;
    std::map<std::string, nlohmann::json> values_;
};

// "tau=5" -> {"tau", "5"}; throws UsageError when there is no '='.
std::pair<std::string, std::string> split_assignment(const std::string& text, const std::string& where);

}  // namespace multilora::compose
