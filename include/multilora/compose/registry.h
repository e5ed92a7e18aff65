// Composition methods by name. Each src/compose/<method>.cpp registers itself with
// MULTILORA_COMPOSITION_METHOD(id) { registry.add(...); }; CMake collects those blocks at configure time,
// so adding a method is adding one file. The CLI help, `generate`'s flags, batch-config validation, the
// manifest and the bench cases all read this registry.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "multilora/compose/method.h"
#include "multilora/compose/method_args.h"

namespace multilora::compose {

struct MethodInfo {
    std::string name;      // "merge", "switch", ...
    std::string summary;   // one line for --help
    std::string source;    // where the rule comes from (paper, repository)
    int order = 100;       // position in listings (lower first)
    int min_loras = 1;     // 0 for "none"
    int max_loras = 0;     // 0: no upper bound
    std::vector<ParamSpec> params;
    // UNet batch rows one step evaluates per image, for k LoRAs (with or without classifier-free guidance).
    std::function<int(int k, bool cfg)> unet_rows;
    std::string cost;      // the same in words, for --help and docs
    // Steps between two changes of a step-dependent schedule (Switch: τ; null or 0: every step costs the
    // same). The bench times two such stretches with no warm-up, so that the changes fall inside the timing.
    std::function<int(int k, const MethodArgs& args)> period_steps;
    std::vector<int> bench_k;  // the k values `bench` measures by default (empty: not benchmarked)
    bool weight_schedules = false;  // honours --lora FILE:W@F,... weight schedules (lora/weight_schedule.h)
    // Images of different sets, each with its own LoRAs and prompt, can share its UNet forwards: the method
    // drives the adapters only through composition slots (AdapterSet::map_images) and reads no trigger words,
    // categories or per-layer state (batch --batch-images across sets). It also implements step_rows() and
    // combine(), so images of other such methods can share its forwards (pipeline::MixedMethods).
    bool mixes_sets = false;

    // Whether the method composes k LoRAs (min_loras..max_loras; "none" takes any set and ignores it).
    bool takes(int k) const { return min_loras == 0 || (k >= min_loras && (max_loras == 0 || k <= max_loras)); }
};

using MethodFactory = std::function<std::unique_ptr<CompositionMethod>(const MethodSetup&)>;

class Registry {
public:
    void add(MethodInfo info, MethodFactory factory);
    const MethodInfo* find(const std::string& name) const;
    // Like find, but throws UsageError naming the known methods (and the closest one) for an unknown name.
    const MethodInfo& get(const std::string& name, const std::string& where = "--method") const;
    std::vector<std::string> names() const;  // in listing order
    std::vector<const MethodInfo*> methods() const;
    // Checks the LoRA count against the method's bounds, then builds it.
    std::unique_ptr<CompositionMethod> create(const std::string& name, const MethodSetup& setup) const;

private:
    struct Entry {
        MethodInfo info;
        MethodFactory factory;
    };
    std::vector<Entry> entries_;
};

// Every built-in method, registered on first use.
const Registry& registry();

// The defaults of a method's parameters.
MethodArgs default_args(const std::string& method);

// The methods and their parameters, as text for --help.
std::string methods_help();

}  // namespace multilora::compose

// Opens the registration function of one method file; the block that follows receives `registry`.
#define MULTILORA_COMPOSITION_METHOD(id) \
    void multilora_register_method_##id(::multilora::compose::Registry& registry)
