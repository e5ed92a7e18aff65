#include "multilora/world/detector.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdio>

#include "multilora/io/safetensors.h"
#include "multilora/models/vae.h"
#include "multilora/models/weight_loading.h"
#include "multilora/train/diffusion_objective.h"
#include "multilora/train/image_folder.h"
#include "multilora/train/learning_rate.h"
#include "multilora/util/clock.h"
#include "multilora/util/error.h"
#include "multilora/world/world_training.h"

namespace multilora::world {

namespace {

constexpr int kClasses = 4;                          // none, then a category's three concepts
constexpr int kOutputs = kCategories * kClasses + 1;  // + the in-world logit
constexpr const char* kFormat = "multilora-world-detector-1";

at::Tensor labels_of(const ConceptChoice& c) {
    at::Tensor t = at::empty({kCategories}, at::kLong);
    for (int k = 0; k < kCategories; ++k) t[k] = c[k] + 1;
    return t;
}

}  // namespace

struct ElementDetector::Net : torch::nn::Module {
    torch::nn::Conv2d c1{nullptr}, c2{nullptr}, c3{nullptr}, c4{nullptr};
    torch::nn::Linear fc{nullptr}, out{nullptr};
    Net() {
        c1 = register_module("c1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 32, 3).padding(1)));
        c2 = register_module("c2", torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 64, 3).padding(1)));
        c3 = register_module("c3", torch::nn::Conv2d(torch::nn::Conv2dOptions(64, 128, 3).padding(1)));
        c4 = register_module("c4", torch::nn::Conv2d(torch::nn::Conv2dOptions(128, 128, 3).padding(1)));
        fc = register_module("fc", torch::nn::Linear(128 * 4 * 4, 256));
        out = register_module("out", torch::nn::Linear(256, kOutputs));
    }
    // [n, 3, 64, 64] -> [n, kOutputs] logits: four conv + pool stages (64 -> 4 px), two linear layers.
    at::Tensor forward(at::Tensor x) {
        for (auto* c : {&c1, &c2, &c3, &c4}) x = at::max_pool2d(at::relu((*c)->forward(x)), 2);
        return out->forward(at::relu(fc->forward(x.flatten(1))));
    }
};

// PyTorch's default initialisation (uniform within 1/sqrt(fan_in)), drawn from a fixed generator rather than
// the global one, so a detector build is the same on every machine and touches no other code's draws.
ElementDetector::ElementDetector() : net_(std::make_unique<Net>()) {
    torch::NoGradGuard no_grad;
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0x5EEDull);
    for (auto& m : net_->named_children()) {
        const at::Tensor w = m.value()->named_parameters()["weight"];
        const double bound = 1.0 / std::sqrt(static_cast<double>(w[0].numel()));
        for (auto& p : m.value()->parameters()) p.uniform_(-bound, bound, gen);
    }
}
ElementDetector::~ElementDetector() = default;
ElementDetector::ElementDetector(ElementDetector&&) noexcept = default;
ElementDetector& ElementDetector::operator=(ElementDetector&&) noexcept = default;

void ElementDetector::save(const std::string& path, const std::map<std::string, std::string>& metadata) const {
    auto meta = metadata;
    meta["format"] = kFormat;
    meta["image_size"] = std::to_string(kImageSize);
    auto tensors = models::named_tensors(*net_);
    for (auto& [name, t] : tensors) t = t.detach().to(at::kHalf).contiguous();  // float16 on disk, as the world's other files
    io::save_safetensors(path, tensors, meta);
}

ElementDetector ElementDetector::load(const std::string& path) {
    auto file = io::SafetensorsFile::open(path);
    const auto& meta = file->metadata();
    if (!meta.count("format") || meta.at("format") != kFormat)
        throw RuntimeError(path + " is not a world detector (no \"format\": \"" + kFormat + "\" in its metadata)");
    ElementDetector d;
    torch::NoGradGuard no_grad;
    for (auto& item : d.net_->named_parameters()) {
        const std::string& name = item.key();
        at::Tensor& param = item.value();
        if (!file->contains(name)) throw RuntimeError(path + ": the detector lacks " + name);
        at::Tensor t = file->tensor(name, static_cast<int8_t>(at::kFloat));
        if (t.sizes() != param.sizes()) throw RuntimeError(path + ": " + name + " has the wrong shape");
        param.copy_(t);
    }
    return d;
}

namespace {

// Augmentations in [-1, 1] space, one draw per image: a shift of up to 3 px, brightness, contrast and
// saturation jitter, a blur (a third of images) and Gaussian noise.
at::Tensor augment(at::Tensor x, at::Generator& gen) {
    const int64_t n = x.size(0);
    at::Tensor shifts = at::randint(-3, 4, {n, 2}, gen, at::kLong);
    std::vector<at::Tensor> rows;
    for (int64_t i = 0; i < n; ++i)
        rows.push_back(at::roll(x[i], {shifts[i][0].item<int64_t>(), shifts[i][1].item<int64_t>()}, {1, 2}));
    x = at::stack(rows);
    auto u = [&](double lo, double hi) { return at::rand({n, 1, 1, 1}, gen).mul(hi - lo).add(lo); };
    const at::Tensor grey = x.mean(1, true);
    x = grey + (x - grey) * u(0.8, 1.2);                         // saturation
    x = x.mean({1, 2, 3}, true) + (x - x.mean({1, 2, 3}, true)) * u(0.85, 1.15);  // contrast
    x = x + u(-0.1, 0.1);                                        // brightness
    const at::Tensor k1 = at::tensor({0.25f, 0.5f, 0.25f});
    const at::Tensor kernel = at::outer(k1, k1).expand({3, 1, 3, 3}).contiguous();
    const at::Tensor blurred = at::conv2d(at::replication_pad2d(x, {1, 1, 1, 1}), kernel, {}, at::IntArrayRef{1, 1}, at::IntArrayRef{0, 0}, at::IntArrayRef{1, 1}, 3);
    x = at::where(at::rand({n, 1, 1, 1}, gen) < 1.0 / 3, blurred, x);
    const at::Tensor noise_scale = u(0, 0.08);  // drawn before the noise, in this order (as GCC evaluated it)
    x = x + at::randn(x.sizes(), gen) * noise_scale;
    return x.clamp(-1, 1);
}

// Images that are not scenes of this world: noise, smooth random colour fields, and renders cut into 8 px
// patches and shuffled (colours of the world, none of its shapes).
at::Tensor negatives(int n, Rng& rng, at::Generator& gen) {
    std::vector<at::Tensor> out;
    for (int i = 0; i < n; ++i) {
        const int kind = rng.below(3);
        if (kind == 0) {
            out.push_back(at::randn({3, kImageSize, kImageSize}, gen).mul(0.6).clamp(-1, 1));
        } else if (kind == 1) {
            at::Tensor coarse = at::rand({1, 3, 4, 4}, gen).mul(2).sub(1);
            out.push_back(at::upsample_bilinear2d(coarse, {kImageSize, kImageSize}, false)[0]);
        } else {
            const int p = 8, g = kImageSize / p;
            const ConceptChoice c = independent_choice(rng);  // drawn before the scene's seed, in this order
            at::Tensor patches = render_batch({rng.next()}, c)[0].reshape({3, g, p, g, p}).permute({1, 3, 0, 2, 4}).reshape({g * g, 3, p, p});
            patches = patches.index_select(0, at::randperm(g * g, gen));
            out.push_back(patches.reshape({g, g, 3, p, p}).permute({2, 0, 3, 1, 4}).reshape({3, kImageSize, kImageSize}));
        }
    }
    return at::stack(out);
}

at::Tensor round_trip(models::AutoencoderKLImpl& vae, const at::Tensor& x) {
    torch::NoGradGuard no_grad;
    return vae.decode(vae.encode_mean(x)).clamp(-1, 1);
}

struct Batch {
    at::Tensor images, labels, in_world;  // [n, 3, S, S]; [scenes, kCategories]; [n]
    int scenes = 0;
};

Batch training_batch(const DetectorTraining& t, int step, models::AutoencoderKLImpl* vae, at::Generator& gen) {
    Rng rng(t.seed * 0x2545F4914F6CDD1Dull + static_cast<uint64_t>(step));
    Batch b;
    b.scenes = t.batch - static_cast<int>(std::lround(t.batch * t.negative_share));
    std::vector<at::Tensor> images, labels;
    for (int i = 0; i < b.scenes; ++i) {
        const ConceptChoice c = independent_choice(rng);
        images.push_back(render_batch({rng.next()}, c)[0]);
        labels.push_back(labels_of(c));
    }
    at::Tensor scenes = at::stack(images);
    const int trips = vae ? static_cast<int>(std::lround(b.scenes * t.vae_share)) : 0;
    if (trips > 0) scenes = at::cat({round_trip(*vae, scenes.slice(0, 0, trips)), scenes.slice(0, trips)});
    b.images = augment(at::cat({scenes, negatives(t.batch - b.scenes, rng, gen)}), gen);
    b.labels = at::stack(labels);
    b.in_world = at::cat({at::ones({b.scenes}), at::zeros({t.batch - b.scenes})});
    return b;
}

at::Tensor batch_loss(ElementDetector::Net& net, const Batch& b) {
    const at::Tensor logits = net.forward(b.images);
    at::Tensor loss = at::binary_cross_entropy_with_logits(logits.select(1, kOutputs - 1), b.in_world);
    const at::Tensor heads = logits.slice(0, 0, b.scenes).slice(1, 0, kOutputs - 1).reshape({b.scenes * kCategories, kClasses});
    return loss + at::cross_entropy_loss(heads, b.labels.reshape({-1}));
}

}  // namespace

std::vector<double> ElementDetector::train(const DetectorTraining& t, models::AutoencoderKLImpl* vae,
                                           const std::function<void(const DetectorStatus&)>& on_step) {
    c10::InferenceMode off(false);
    net_->train();
    torch::optim::AdamW opt(net_->parameters(), torch::optim::AdamWOptions(t.lr).weight_decay(1e-4));
    std::vector<double> losses;
    for (int step = 0; step < t.steps; ++step) {
        const auto t0 = std::chrono::steady_clock::now();
        // The last quarter at a tenth of the rate: the heads settle on the hard cases (VAE blur, pastelle).
        train::tenth_rate_for_last_quarter(opt, t.lr, step, t.steps);
        at::Generator gen = train::step_generator(t.seed, step);
        const Batch b = training_batch(t, step, vae, gen);
        opt.zero_grad();
        at::Tensor loss = batch_loss(*net_, b);
        loss.backward();
        opt.step();
        losses.push_back(loss.item<double>());
        if (on_step) on_step({step + 1, t.steps, losses.back(), seconds_since(t0)});
    }
    net_->eval();
    return losses;
}

std::vector<Verdict> ElementDetector::detect(const at::Tensor& images) const {
    if (images.dim() != 4 || images.size(1) != 3 || images.size(2) != kImageSize || images.size(3) != kImageSize)
        throw RuntimeError("the world detector takes " + std::to_string(kImageSize) + "x" + std::to_string(kImageSize) + " RGB images");
    torch::NoGradGuard no_grad;
    const at::Tensor logits = net_->forward(images.to(at::kFloat));
    const at::Tensor probs = logits.slice(1, 0, kOutputs - 1).reshape({-1, kCategories, kClasses}).softmax(2);
    const at::Tensor world = logits.select(1, kOutputs - 1).sigmoid();
    std::vector<Verdict> out(static_cast<size_t>(images.size(0)));
    for (size_t i = 0; i < out.size(); ++i) {
        for (int k = 0; k < kCategories; ++k) {
            const auto [p, arg] = probs[static_cast<int64_t>(i)][k].max(0);
            out[i].found[k] = static_cast<int>(arg.item<int64_t>()) - 1;
            out[i].confidence[k] = p.item<float>();
        }
        out[i].in_world = world[static_cast<int64_t>(i)].item<float>();
    }
    return out;
}

Verdict ElementDetector::detect_rgb(const std::vector<uint8_t>& rgb, int width, int height) const {
    return detect(train::rgb8_to_tensor(rgb.data(), width, height).unsqueeze(0)).at(0);
}

namespace {

struct Tally {
    int tp = 0, fn = 0, fp = 0, tn = 0;
    void add(bool truth, bool found) { (truth ? (found ? tp : fn) : (found ? fp : tn))++; }
    double accuracy() const { return double(tp + tn) / std::max(1, tp + tn + fp + fn); }
    double recall() const { return double(tp) / std::max(1, tp + fn); }
    double false_positive() const { return double(fp) / std::max(1, fp + tn); }
};

}  // namespace

DetectorReport evaluate_detector(const ElementDetector& d, models::AutoencoderKLImpl* vae, int per_concept, uint64_t seed) {
    const auto& all = concepts();
    std::vector<Tally> on_renders(all.size()), on_trips(all.size());
    int in_render = 0, in_trip = 0, scenes = 0;
    Rng rng(seed ^ 0xD1B54A32D192ED03ull);  // held out: training draws from seeds of another generator
    for (size_t target = 0; target < all.size(); ++target) {
        std::vector<ConceptChoice> choices;
        std::vector<at::Tensor> images;
        for (int i = 0; i < per_concept; ++i) {
            ConceptChoice c = independent_choice(rng);
            c[static_cast<int>(all[target].category)] = all[target].index;
            if (i % 2 == 1) c[static_cast<int>(all[target].category)] = rng.chance(0.5f) ? -1 : (all[target].index + 1 + rng.below(2)) % 3;
            choices.push_back(c);
            images.push_back(render_batch({rng.next()}, c)[0]);
        }
        const at::Tensor x = at::stack(images);
        const auto on_render = d.detect(x);
        const auto on_trip = vae ? d.detect(round_trip(*vae, x)) : on_render;
        for (size_t i = 0; i < choices.size(); ++i) {
            const int k = static_cast<int>(all[target].category);
            on_renders[target].add(choices[i][k] == all[target].index, on_render[i].found[k] == all[target].index);
            on_trips[target].add(choices[i][k] == all[target].index, on_trip[i].found[k] == all[target].index);
            in_render += on_render[i].is_in_world(), in_trip += on_trip[i].is_in_world(), ++scenes;
        }
    }
    DetectorReport r;
    for (size_t k = 0; k < all.size(); ++k) {
        const Tally& a = on_renders[k];
        const Tally& b = on_trips[k];
        r.concepts.push_back({all[k].id, all[k].trigger, a.tp + a.fn, a.fp + a.tn, a.accuracy(), b.accuracy(), a.recall(), b.recall(),
                              a.false_positive(), b.false_positive()});
    }
    r.in_world_render = double(in_render) / scenes;
    r.in_world_vae = double(in_trip) / scenes;
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed + 1);
    const auto neg = d.detect(negatives(120, rng, gen));
    int rejected = 0;
    for (const Verdict& v : neg) rejected += !v.is_in_world();
    r.negatives_rejected = double(rejected) / neg.size();
    return r;
}

std::string DetectorReport::markdown() const {
    std::string md = "| concept | trigger | held-out images (with / without) | accuracy, renders | accuracy, VAE round trips | recall, renders / VAE | false positives, renders / VAE |\n"
                     "| --- | --- | --- | --- | --- | --- | --- |\n";
    char line[512];
    for (const ConceptAccuracy& c : concepts) {
        std::snprintf(line, sizeof line, "| `%s` | %s | %d / %d | %.1f%% | %.1f%% | %.1f%% / %.1f%% | %.1f%% / %.1f%% |\n", c.id.c_str(),
                      c.trigger.c_str(), c.positives, c.negatives, 100 * c.render_accuracy, 100 * c.vae_accuracy,
                      100 * c.render_recall, 100 * c.vae_recall, 100 * c.render_false_positive, 100 * c.vae_false_positive);
        md += line;
    }
    std::snprintf(line, sizeof line,
                  "\nIn-world: %.1f%% of held-out renders, %.1f%% of their VAE round trips; %.1f%% of non-scenes rejected.\n",
                  100 * in_world_render, 100 * in_world_vae, 100 * negatives_rejected);
    return md + line;
}

}  // namespace multilora::world
