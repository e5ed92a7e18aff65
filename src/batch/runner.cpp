#include "multilora/batch/runner.h"

#include <signal.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <torch/torch.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <tuple>

#include "multilora/io/atomic_file.h"
#include "multilora/io/jsonl.h"
#include "multilora/io/png_writer.h"
#include "multilora/io/sha256.h"
#include "multilora/lora/adapter_set.h"
#include "multilora/batch/gallery.h"
#include "multilora/batch/sheet.h"
#include "multilora/pipeline/file_hashes.h"
#include "multilora/pipeline/generation.h"
#include "multilora/pipeline/image_outputs.h"
#include "multilora/pipeline/model_loader.h"
#include "multilora/pipeline/runtime.h"
#include "multilora/compose/registry.h"
#include "multilora/pipeline/run_session.h"
#include "multilora/sampling/scheduler.h"
#include "multilora/util/clock.h"
#include "multilora/util/error.h"
#include "multilora/util/interrupt.h"
#include "multilora/util/version.h"
#include "multilora/util/strings.h"

namespace fs = std::filesystem;

namespace multilora::batch {
namespace {

using ojson = nlohmann::ordered_json;

std::string host_name() {
    char buf[256] = {0};
    if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
    return buf;
}


// One CPU generator per (k, seed), consumed in set order: draw i is set i's initial noise.
class NoiseStream {
public:
    NoiseStream(uint64_t seed, std::vector<int64_t> shape)
        : seed_(seed), shape_(std::move(shape)), gen_(at::make_generator<at::CPUGeneratorImpl>(seed)) {}
    at::Tensor get(int64_t index) {
        if (index < next_) {
            gen_ = at::make_generator<at::CPUGeneratorImpl>(seed_);
            next_ = 0;
        }
        at::Tensor t;
        while (next_ <= index) {
            t = at::randn(shape_, gen_, at::TensorOptions().dtype(at::kFloat));
            ++next_;
        }
        return t;
    }

private:
    uint64_t seed_;
    std::vector<int64_t> shape_;
    at::Generator gen_;
    int64_t next_ = 0;
};

std::string model_display_name(const std::string& path) {
    fs::path p = fs::path(path).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    return p.extension() == ".safetensors" ? p.stem().string() : p.filename().string();
}

std::string batch_log_path(const BatchConfig& c) { return (fs::path(c.out) / "batch.jsonl").string(); }

// Calls `use` with each record of batch.jsonl's text. A line that is not a JSON object, or whose fields have
// the wrong types (`use` throws), is skipped: a killed run can leave a torn last line.
void for_each_log_record(const std::string& text, const std::function<void(const nlohmann::json&)>& use) {
    for (const nlohmann::json& j : io::parse_jsonl(text)) {
        try {
            use(j);
        } catch (const std::exception&) {
        }
    }
}

std::vector<const PlanSet*> shard_sets(const BatchPlan& plan, const Shard& shard) {
    std::vector<const PlanSet*> out;
    for (const auto& s : plan.sets)
        if (shard.contains(s)) out.push_back(&s);
    return out;
}

bool outputs_exist(const PlanImage& im) {
    std::error_code ec;
    return fs::is_regular_file(im.png_path, ec) && fs::is_regular_file(im.manifest_path, ec);
}

void write_sheet(const BatchConfig& c, const BatchPlan& plan, const PlanSet& s) {
    SheetSpec spec;
    spec.title = c.style + " | k=" + std::to_string(s.k) + " | set #" + std::to_string(s.set_index) + ": " +
                 join(s.lora_ids, " + ");
    spec.columns = static_cast<int>(c.methods.size());
    for (size_t i : s.images) {
        const PlanImage& im = plan.images[i];
        SheetCell cell;
        cell.png_path = im.png_path;
        cell.heading = (im.method == "none" ? std::string("none (no LoRA)") : im.method) +
                       (c.seeds.size() > 1 ? "  seed " + std::to_string(im.seed) : "");
        for (const LoraEntry* e : s.loras) cell.lines.push_back(e->name);
        spec.cells.push_back(std::move(cell));
    }
    io::write_file_atomic(s.sheet_path, render_sheet(spec));
}

void write_gallery(const BatchConfig& c, const BatchPlan& plan) {
    const std::string plan_path = gallery_plan_path(c);
    io::ensure_writable_dir(fs::path(plan_path).parent_path().string());
    // Shards sharing the folder: the gallery is rendered from what is on disk, so reading and writing happen
    // under one lock; the last shard to finish then writes the complete gallery.
    io::DirectoryLock lock(c.out);
    const std::string plan_text = gallery_plan(c, plan).dump(1) + "\n";
    std::error_code ec;
    bool same = false;
    if (fs::is_regular_file(plan_path, ec)) {
        try {
            same = io::read_file(plan_path) == plan_text;
        } catch (const std::exception&) {
        }
    }
    if (!same) io::write_file_atomic(plan_path, plan_text);
    io::write_file_atomic((fs::path(c.out) / "index.html").string(), render_gallery(c.out));
}

// Inside a run the gallery is a convenience: a failure to refresh it is reported, not fatal (a full disk
// stops the batch at the next image anyway).
void refresh_gallery(const BatchConfig& c, const BatchPlan& plan) {
    try {
        write_gallery(c, plan);
    } catch (const std::exception& e) {
        spdlog::warn("gallery not updated: {}", e.what());
    }
}

std::string stale_message(const BatchConfig& c, const BatchPlan& plan, const Survey& sv) {
    std::string msg = std::to_string(sv.stale) + " finished image(s) in '" + c.out + "' were made with other settings than '" +
                      c.config_path + "':";
    int shown = 0;
    for (size_t i : sv.images) {
        const ImageCheck& ch = sv.checks.at(i);
        if (ch.state != ImageState::Stale) continue;
        if (shown == 5) {
            msg += "\n  ... and " + std::to_string(sv.stale - shown) + " more";
            break;
        }
        std::vector<std::string> diffs(ch.differences.begin(), ch.differences.begin() + std::min<size_t>(4, ch.differences.size()));
        msg += "\n  " + plan.images[i].rel_manifest + ": " + join(diffs, "; ") + (ch.differences.size() > 4 ? "; ..." : "");
        ++shown;
    }
    msg += "\nPass --overwrite to regenerate them with this config, or point \"out\" at another folder.";
    return msg;
}

// Finished images whose batch.jsonl line was lost (killed between the manifest and the log) get one now.
// The fields every batch.jsonl line carries, in their fixed order.
ojson log_line(const BatchConfig& c, const PlanImage& im, const std::string& png_sha256) {
    ojson line;
    line["time"] = utc_timestamp();
    line["style"] = c.style;
    line["k"] = im.k;
    line["set_index"] = im.set_index;
    line["method"] = im.method;
    line["seed"] = im.seed;
    line["lora_ids"] = im.lora_ids;
    line["png"] = im.rel_png;
    line["manifest"] = im.rel_manifest;
    line["png_sha256"] = png_sha256;
    return line;
}

void reconcile_log(const BatchConfig& c, const BatchPlan& plan, const Survey& sv, const Shard& shard) {
    const std::string path = batch_log_path(c);
    std::set<std::string> logged;
    std::error_code ec;
    if (fs::is_regular_file(path, ec))
        for_each_log_record(io::read_file(path), [&](const nlohmann::json& j) {
            logged.insert(j.value("png", "") + " " + j.value("png_sha256", ""));
        });
    int added = 0;
    for (size_t i : sv.images) {
        const ImageCheck& ch = sv.checks.at(i);
        if (ch.state != ImageState::Finished) continue;
        const PlanImage& im = plan.images[i];
        if (logged.count(im.rel_png + " " + ch.png_sha256)) continue;
        ojson line = log_line(c, im, ch.png_sha256);
        line["recovered"] = true;
        line["shard"] = shard.str();
        io::append_line_durable(path, line.dump());
        ++added;
    }
    if (added) spdlog::info("added {} missing line(s) to {} for images finished by an interrupted run", added, path);
}

void warn_if_low_on_space(const BatchConfig& c, size_t images) {
    struct statvfs st {};
    if (::statvfs(c.out.c_str(), &st) != 0) return;
    const double free_bytes = double(st.f_bavail) * double(st.f_frsize);
    const double need = double(images) * (double(c.width) * c.height * 3 + 64 * 1024);
    if (free_bytes < need)
        spdlog::warn("only {:.0f} MiB free in '{}'; the {} remaining image(s) may need up to {:.0f} MiB", free_bytes / 1048576,
                     c.out, images, need / 1048576);
}

}  // namespace

int unet_rows(const std::string& method, int k, double guidance_scale) {
    const int per = compose::cfg_rows_per_latent(guidance_scale);
    return method == "composite" ? per * std::max(1, k) : per;
}

double StepCost::image_seconds(const BatchConfig& c, const PlanImage& im) const {
    const int rows = unet_rows(im.method, im.k, c.guidance_scale);
    double per_step = -1;
    auto it = step_s.find({im.method, im.k});
    if (it != step_s.end()) per_step = it->second;
    else if (row_step_s > 0) per_step = row_step_s * rows;
    if (per_step < 0) return -1;
    return per_step * c.steps + overhead_s;
}

void StepCost::observe(const std::string& method, int k, int rows, double mean_step_s, double overhead) {
    if (!(mean_step_s > 0) || rows < 1) return;
    // Running means: per (method, k), and per UNet row over everything seen.
    auto key = std::make_pair(method, k);
    const double n_key = static_cast<double>(key_counts_[key]);
    step_s[key] = (step_s.count(key) ? step_s[key] * n_key : 0.0) / (n_key + 1) + mean_step_s / (n_key + 1);
    key_counts_[key] += 1;
    step_sum_ += mean_step_s;
    rows_sum_ += rows;
    row_step_s = step_sum_ / rows_sum_;
    overhead_s = (overhead_s * samples + std::max(0.0, overhead)) / (samples + 1);
    ++samples;
}

StepCost cost_from_log(const BatchConfig& c) {
    StepCost cost;
    const std::string path = batch_log_path(c);
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) return cost;
    std::string text;
    try {
        text = io::read_file(path);
    } catch (const std::exception&) {
        return cost;
    }
    for_each_log_record(text, [&](const nlohmann::json& j) {
        if (!j.contains("step_s") || j.value("style", "") != c.style || j.value("width", 0) != c.width ||
            j.value("height", 0) != c.height || j.value("dtype", "") != c.dtype || j.value("device", "") != c.device)
            return;
        cost.observe(j.value("method", ""), j.value("k", 0), j.value("rows", 0), j["step_s"].get<double>(),
                     j.value("overhead_s", 0.0));
    });
    if (cost.samples) cost.source = "measured on " + std::to_string(cost.samples) + " image(s) in " + path;
    return cost;
}

StepCost measure_step_cost(const BatchConfig& c, int threads) {
    StepCost cost;
    pipeline::configure_threads(threads);
    pipeline::StableDiffusionModel model = pipeline::load_stable_diffusion({c.model, c.vae, c.dtype, c.device});
    pipeline::GenerationRequest r;
    r.prompt = c.prompt;
    r.negative_prompt = c.negative_prompt;
    r.steps = 3;
    r.guidance_scale = c.guidance_scale;
    r.width = c.width;
    r.height = c.height;
    r.scheduler = c.scheduler;
    std::vector<double> secs;
    const pipeline::GenerationResult res =
        pipeline::generate(model, r, nullptr, [&](int, int, double s) { secs.push_back(s); });
    // The first step pays for warm-up; the others are the steady cost.
    double sum = 0;
    for (size_t i = 1; i < secs.size(); ++i) sum += secs[i];
    const double mean = secs.size() > 1 ? sum / double(secs.size() - 1) : secs.at(0);
    cost.observe("none", 0, unet_rows("none", 1, c.guidance_scale), mean, res.encode_seconds + res.decode_seconds);
    cost.source = "measured: " + std::to_string(secs.size()) + " plain steps at " + std::to_string(c.width) + "x" +
                  std::to_string(c.height) + " (Composite scaled by its 2k UNet rows)";
    return cost;
}

Survey survey(const BatchConfig& c, const BatchPlan& plan, const Shard& shard) {
    Survey sv;
    for (const PlanSet* s : shard_sets(plan, shard))
        for (size_t i : s->images) {
            sv.images.push_back(i);
            ImageCheck ch = check_image(c, plan.images[i]);
            if (ch.state == ImageState::Finished) ++sv.finished;
            else if (ch.state == ImageState::Stale) ++sv.stale;
            else ++sv.pending;
            sv.checks.emplace(i, std::move(ch));
        }
    return sv;
}

int write_sheets_and_gallery(const BatchConfig& c, const BatchPlan& plan, const Shard& shard, bool rewrite) {
    io::ensure_writable_dir(c.out);
    int written = 0;
    for (const PlanSet* s : shard_sets(plan, shard)) {
        bool complete = true;
        for (size_t i : s->images) complete = complete && outputs_exist(plan.images[i]);
        if (!complete) continue;
        std::error_code ec;
        if (!rewrite && fs::is_regular_file(s->sheet_path, ec)) continue;
        write_sheet(c, plan, *s);
        ++written;
    }
    write_gallery(c, plan);
    return written;
}

namespace {

// Leftovers of a killed run: temporary files beside this shard's outputs (other shards never write them);
// shared files' temporaries only when old enough not to be another shard's write in flight. A run killed
// just before this one may still be exiting: the sweep of shared files is repeated when this object goes.
class LeftoverSweep {
public:
    LeftoverSweep(const BatchConfig& c, const BatchPlan& plan, const Shard& shard) {
        std::vector<std::string> finals;
        for (const PlanSet* s : shard_sets(plan, shard)) {
            finals.push_back(s->sheet_path);
            for (size_t i : s->images) {
                finals.push_back(plan.images[i].png_path);
                finals.push_back(plan.images[i].manifest_path);
            }
        }
        probe_dirs_ = {c.out, (fs::path(c.out) / c.style).string()};
        for (const PlanSet* s : shard_sets(plan, shard))
            if (probe_dirs_.back() != s->dir) probe_dirs_.push_back(s->dir);
        shared_ = {(fs::path(c.out) / "index.html").string(), gallery_plan_path(c)};
        int removed = remove_leftover_temp_files(finals);
        removed += remove_abandoned_temp_files(shared_, probe_dirs_, 600);
        if (removed) spdlog::info("removed {} temporary file(s) left by an interrupted run", removed);
    }
    ~LeftoverSweep() {
        try {
            remove_abandoned_temp_files(shared_, probe_dirs_, 600);
        } catch (...) {
        }
    }

private:
    std::vector<std::string> shared_, probe_dirs_;
};

// What this run has to make: the unfinished images of the shard and the LoRAs they need.
struct Work {
    Survey survey;
    std::vector<size_t> todo;      // indices into plan.images, plan order
    std::vector<std::string> ids;  // the LoRAs `todo` needs, in lora_info order (slot i = ids[i])
};

Work plan_work(const BatchConfig& c, const BatchPlan& plan, const BatchOptions& opt) {
    Work w;
    w.survey = survey(c, plan, opt.shard);
    const Survey& sv = w.survey;
    if (sv.stale > 0 && !opt.overwrite) throw RuntimeError(stale_message(c, plan, sv));
    for (size_t i : sv.images)
        if (sv.checks.at(i).state != ImageState::Finished) w.todo.push_back(i);
    if (sv.stale > 0) spdlog::info("--overwrite: regenerating {} image(s) made with other settings", sv.stale);
    std::set<std::string> needed;
    for (size_t i : w.todo) needed.insert(plan.images[i].lora_ids.begin(), plan.images[i].lora_ids.end());
    for (const LoraEntry* e : c.lora_info.all())
        if (needed.count(e->id)) w.ids.push_back(e->id);
    if (!w.todo.empty()) {
        auto missing = missing_input_files(c, w.ids);
        if (!missing.empty())
            throw RuntimeError("missing input file(s) for '" + c.config_path + "' (nothing was generated):\n  " +
                               join(missing, "\n  ") +
                               "\nscripts/download_composlora.sh fetches the ComposLoRA models and LoRAs.");
    }
    return w;
}

// The model and every LoRA, read once for the whole batch, with what every manifest of the run shares.
struct BatchSession {
    BatchSession(const BatchConfig& c, const std::vector<std::string>& ids, int threads_requested);

    int threads = 0;
    std::unique_ptr<pipeline::RunSession> session;
    std::map<std::string, int> slot_of;
    nlohmann::json model_json, runtime;
    std::string model_name;
    std::vector<int64_t> noise_shape;  // [1, C, h, w]
    std::string host;
};

BatchSession::BatchSession(const BatchConfig& c, const std::vector<std::string>& ids, int threads_requested) {
    threads = pipeline::configure_threads(threads_requested);
    spdlog::info("loading {}", c.model);
    std::vector<lora::LoraSpec> specs;
    for (const auto& id : ids) {
        slot_of[id] = static_cast<int>(specs.size());
        specs.push_back({c.lora_file(id), 1.0});
    }
    pipeline::LoadOptions load{c.model, c.vae, c.dtype, c.device};
    if (!c.embedding_dir.empty()) load.embedding_dirs = {c.embedding_dir};
    session = std::make_unique<pipeline::RunSession>(pipeline::SessionOptions{load, specs, c.lora_scale});
    spdlog::info("loaded the model and {} LoRA(s) in {:.1f} s", specs.size(), session->load_seconds());
    pipeline::StableDiffusionModel& model = session->model();
    model_json = session->model_record(pipeline::scheduler_class(c.scheduler, model.scheduler_config));
    for (int slot = 0; slot < static_cast<int>(ids.size()); ++slot) session->lora_record(slot);  // hash once, up front
    runtime = pipeline::runtime_info();
    model_name = model_display_name(c.model);
    const int factor = model.vae->config().downscale_factor();
    if (c.width % factor != 0 || c.height % factor != 0)
        throw UsageError(c.config_path + ": width and height must be multiples of " + std::to_string(factor) + " for this VAE");
    noise_shape = {1, model.unet->config().in_channels, c.height / factor, c.width / factor};
    host = host_name();
}

pipeline::GenerationRequest image_request(const BatchConfig& c, const PlanImage& im, at::Tensor noise) {
    pipeline::GenerationRequest req;
    req.prompt = im.prompt;
    req.negative_prompt = c.negative_prompt;
    req.steps = c.steps;
    req.guidance_scale = c.guidance_scale;
    req.seed = im.seed;
    req.width = c.width;
    req.height = c.height;
    req.scheduler = c.scheduler;
    req.long_prompt = c.long_prompt == "chunk" ? text::LongPromptMode::Chunk : text::LongPromptMode::Truncate;
    req.prompt_syntax = c.prompt_syntax == "a1111" ? text::PromptSyntax::A1111 : text::PromptSyntax::Plain;
    req.initial_noise = std::move(noise);
    req.allow_nan = c.allow_nan;
    req.vae_tile = c.vae_tile;
    req.max_memory_bytes = c.max_memory_gb * 1e9;
    return req;
}

// The manifest: reproducible (no clock times; those go to batch.jsonl).
nlohmann::json image_manifest(const BatchConfig& c, const PlanSet& s, const PlanImage& im, const BatchSession& b,
                              const pipeline::SessionResult& out) {
    nlohmann::json m;
    m["tool"] = {{"name", "multilora"}, {"version", multilora::version()}, {"command", "batch"}};
    m["settings"] = nlohmann::json::parse(expected_settings(c, im).dump());
    nlohmann::json set_loras = nlohmann::json::array();
    for (const LoraEntry* e : s.loras)
        set_loras.push_back({{"id", e->id}, {"name", e->name}, {"category", e->category}, {"trigger", e->trigger},
                             {"url", e->url}});
    m["batch"] = {{"config", fs::path(c.config_path).filename().string()},
                  {"style", c.style},
                  {"k", im.k},
                  {"set_index", im.set_index},
                  {"lora_set", set_loras},
                  {"noise", {{"seed", im.seed},
                             {"draw_index", im.noise_draw},
                             {"shape", b.noise_shape},
                             {"rule", "one CPU generator per (style, k, seed), seeded with the seed and "
                                      "consumed in set order: set i starts from draw i"}}}};
    m["execution"] = {{"device", c.device}, {"threads", b.threads}, {"max_batch_rows", c.max_batch_rows}};
    m["model"] = b.model_json;
    const bool with_loras = im.method != "none";
    nlohmann::json loras = nlohmann::json::array();
    if (with_loras)
        for (const auto& id : im.lora_ids) {
            nlohmann::json j = b.session->lora_record(b.slot_of.at(id));
            j["id"] = id;
            loras.push_back(j);
        }
    m["loras"] = loras;
    m["composition"] = out.composition;
    m["composition"]["lora_scale"] = with_loras ? nlohmann::json(c.lora_scale) : nlohmann::json(nullptr);
    m["prompt_truncated"] = out.generation.prompt_truncated;
    m["timesteps"] = out.generation.timesteps;
    m["runtime"] = b.runtime;
    return m;
}

// Writes the PNG, then its manifest (a PNG without its manifest is not a finished image: removed when the
// manifest cannot be written). Returns the PNG's SHA-256.
std::string write_image(const BatchConfig& c, const PlanImage& im, const BatchSession& b,
                        const pipeline::GenerationRequest& req, const pipeline::GenerationResult& result,
                        nlohmann::json manifest, BatchObserver& observer, int finished) {
    const std::string params = pipeline::a1111_parameters(req, im.seed, b.session->model_hash(), b.model_name) +
                               ", Noise draw: " + std::to_string(im.noise_draw) + ", Composition: " + im.method +
                               ", LoRAs: " + join(im.lora_ids, "+");
    const std::string png =
        io::encode_png(result.images.at(0).data(), result.width, result.height, {{"parameters", params}});
    observer.checkpoint({"mid-png", finished, -1, &im.png_path, &png});
    io::write_file_atomic(im.png_path, png);
    observer.checkpoint({"before-manifest", finished});
    const std::string sha = io::sha256_hex(png);
    manifest["outputs"] = nlohmann::json::array({{{"kind", "png"}, {"path", im.stem + ".png"}, {"sha256", sha}, {"index", 0}}});
    try {
        io::write_file_atomic(im.manifest_path, manifest.dump(2) + "\n");
    } catch (...) {
        std::remove(im.png_path.c_str());
        throw;
    }
    return sha;
}

// The image's batch.jsonl line: the shared fields, then its timings and where it was made.
ojson timing_line(const BatchConfig& c, const PlanImage& im, const BatchSession& b, const BatchOptions& opt,
                  const std::string& sha, double seconds, double mean_step, double overhead) {
    ojson line = log_line(c, im, sha);
    line["seconds"] = seconds;
    line["steps"] = c.steps;
    line["step_s"] = mean_step;
    line["rows"] = unet_rows(im.method, im.k, c.guidance_scale);
    line["overhead_s"] = overhead;
    line["width"] = c.width;
    line["height"] = c.height;
    line["dtype"] = c.dtype;
    line["device"] = c.device;
    line["threads"] = b.threads;
    line["shard"] = opt.shard.str();
    line["host"] = b.host;
    line["pid"] = static_cast<long>(::getpid());
    return line;
}

// Generates the plan's unfinished images set by set, keeping sheets and the gallery up to date.
class Generator {
public:
    Generator(const BatchConfig& c, const BatchPlan& plan, const BatchOptions& opt, BatchObserver& observer,
              const Work& work, BatchSession& session, BatchReport& report)
        : c_(c), plan_(plan), opt_(opt), observer_(observer), work_(work), b_(session), report_(report),
          todo_set_(work.todo.begin(), work.todo.end()), done_(plan.images.size(), false), cost_(cost_from_log(c)),
          per_forward_(static_cast<size_t>(std::max(1, opt.batch_images))) {
        for (size_t i : work.survey.images) done_[i] = work.survey.checks.at(i).state == ImageState::Finished;
    }

    void run_all();
    int truncated() const { return truncated_; }

private:
    // The estimated seconds of the images still to make (groups run them out of plan order); -1 when unknown.
    double eta_remaining() const {
        double total = 0;
        for (size_t i : work_.todo) {
            if (done_[i]) continue;
            const double s = cost_.image_seconds(c_, plan_.images[i]);
            if (s < 0) return -1.0;
            total += s;
        }
        return total;
    }
    bool mixes_sets(const std::string& method) const;
    std::vector<std::vector<size_t>> forward_groups(const std::vector<const PlanSet*>& sets) const;
    bool complete(const PlanSet& s) const;
    pipeline::SessionRun session_run(const PlanImage& im, at::Tensor noise);
    pipeline::SessionResult generate(std::vector<pipeline::SessionRun>& runs, double& mean_step);
    void run_group(const std::vector<size_t>& group);
    void finish_image(const PlanSet& s, const PlanImage& im, const pipeline::SessionRun& run,
                      const pipeline::SessionResult& out, double seconds, double mean_step, double compute_overhead);

    const BatchConfig& c_;
    const BatchPlan& plan_;
    const BatchOptions& opt_;
    BatchObserver& observer_;
    const Work& work_;
    BatchSession& b_;
    BatchReport& report_;
    std::set<size_t> todo_set_;
    std::vector<bool> done_;
    StepCost cost_;
    std::map<std::pair<int, uint64_t>, NoiseStream> streams_;
    size_t per_forward_ = 1;
    int index_ = 0, truncated_ = 0;
};

// Runs the shard's forward groups in order; a set's sheet is written when its last image is, and the gallery
// then; sets that had nothing to do get their sheet when it is missing.
void Generator::run_all() {
    const std::vector<const PlanSet*> sets = shard_sets(plan_, opt_.shard);
    std::set<size_t> ready;  // sets whose folder is checked
    for (const std::vector<size_t>& group : forward_groups(sets)) {
        for (size_t i : group)
            if (ready.insert(plan_.images[i].set).second) io::ensure_writable_dir(plan_.sets[plan_.images[i].set].dir);
        run_group(group);
        std::set<size_t> touched;
        for (size_t i : group) touched.insert(plan_.images[i].set);
        bool sheets = false;
        for (size_t set : touched)
            if (complete(plan_.sets[set])) {
                write_sheet(c_, plan_, plan_.sets[set]);
                ++report_.sheets;
                sheets = true;
            }
        if (sheets) refresh_gallery(c_, plan_);
    }
    for (const PlanSet* s : sets) {
        std::error_code ec;
        if (!ready.count(static_cast<size_t>(s - plan_.sets.data())) && complete(*s) && !fs::is_regular_file(s->sheet_path, ec)) {
            write_sheet(c_, plan_, *s);
            ++report_.sheets;
        }
    }
}

bool Generator::complete(const PlanSet& s) const {
    return std::all_of(s.images.begin(), s.images.end(), [&](size_t i) { return bool(done_[i]); });
}

// Whether images of different sets may share a forward with this method: the method says so, and every prompt
// encodes to one length (77 tokens: truncated, plain syntax).
bool Generator::mixes_sets(const std::string& method) const {
    return compose::registry().get(method).mixes_sets && c_.long_prompt == "truncate" && c_.prompt_syntax == "plain";
}

// The unfinished images in the order they run: one at a time in plan order, or, with several images per
// forward, up to per_forward_ at a time, in plan order: of one method and k, the config's seeds of one set;
// of the methods that mix sets (MethodInfo::mixes_sets), any of their images, whatever the set, method or k.
std::vector<std::vector<size_t>> Generator::forward_groups(const std::vector<const PlanSet*>& sets) const {
    std::vector<std::vector<size_t>> groups;
    std::map<std::tuple<size_t, std::string, int>, size_t> filling;  // (set or every set, method, k) -> open group
    for (const PlanSet* s : sets)
        for (size_t i : s->images) {
            if (!todo_set_.count(i)) continue;
            const PlanImage& im = plan_.images[i];
            const auto key = mixes_sets(im.method) ? std::make_tuple(plan_.sets.size(), std::string(), 0)
                                                   : std::make_tuple(im.set, im.method, im.k);
            auto it = filling.find(key);
            if (per_forward_ > 1 && it != filling.end() && groups[it->second].size() < per_forward_) {
                groups[it->second].push_back(i);
                continue;
            }
            filling[key] = groups.size();
            groups.push_back({i});
        }
    return groups;
}

pipeline::SessionRun Generator::session_run(const PlanImage& im, at::Tensor noise) {
    pipeline::SessionRun run;
    run.request = image_request(c_, im, std::move(noise));
    run.method = im.method;
    auto args = c_.method_args.find(im.method);
    run.args = args != c_.method_args.end() ? args->second : compose::default_args(im.method);
    if (im.method != "none")
        for (const auto& id : im.lora_ids) {
            run.slots.push_back(b_.slot_of.at(id));
            const LoraEntry* e = c_.lora_info.find(id);
            run.triggers.push_back(e ? e->trigger : std::vector<std::string>{});
            run.categories.push_back(e ? e->category : std::string());
        }
    return run;
}

// Runs one generation of the group's images (RunSession::run_images: a set's seeds share their prompt
// encoding; images of several sets each bring their own prompt and LoRAs) with the step callbacks the
// observer wants; `mean_step` gets its mean step time.
pipeline::SessionResult Generator::generate(std::vector<pipeline::SessionRun>& runs, double& mean_step) {
    const int finished = report_.generated;
    runs.front().on_step = [this, finished](int step, int total, double secs) {
        observer_.step(step, total, secs);
        observer_.checkpoint({"mid-image", finished, step});
    };
    pipeline::SessionResult out = b_.session->run_images(runs);
    double step_sum = 0;
    for (double x : out.generation.step_seconds) step_sum += x;
    mean_step = out.generation.step_seconds.empty() ? 0 : step_sum / static_cast<double>(out.generation.step_seconds.size());
    return out;
}

// One generation for a group of images (one image, or several sharing each forward, of one method or several), each
// image's noise drawn from its own seed's stream; each image is then written, logged and timed on its own
// (a shared forward's time split evenly).
void Generator::run_group(const std::vector<size_t>& group) {
    const int todo = static_cast<int>(work_.todo.size()), n = static_cast<int>(group.size());
    observer_.image_started(plan_.images[group.front()], index_, todo, eta_remaining());
    const auto t_group = std::chrono::steady_clock::now();
    std::vector<pipeline::SessionRun> runs;
    for (size_t i : group) {
        const PlanImage& im = plan_.images[i];
        at::Tensor noise = streams_.try_emplace({im.k, im.seed}, im.seed, b_.noise_shape).first->second.get(im.noise_draw);
        runs.push_back(session_run(im, noise));
    }
    double mean_step = 0;
    const pipeline::SessionResult out = generate(runs, mean_step);
    const double each = seconds_since(t_group) / n;
    for (int j = 0; j < n; ++j) {
        const PlanImage& im = plan_.images[group[j]];
        pipeline::SessionRun one = runs[j];
        one.request = image_request(c_, im, at::Tensor());
        one.request.num_images = n;  // for the log; the PNG's parameters do not record it
        pipeline::SessionResult mine = out;
        mine.generation.images = {out.generation.images.at(j)};
        if (!out.image_compositions.empty()) mine.composition = out.image_compositions.at(j);
        if (!out.image_prompt_cuts.empty()) {
            const auto& cut = out.image_prompt_cuts.at(j);
            mine.generation.positive_truncated = cut.prompt;
            mine.generation.negative_truncated = cut.negative;
            mine.generation.prompt_truncated = cut.prompt || cut.negative;
        }
        if (j > 0) observer_.image_started(im, index_, todo, eta_remaining());
        finish_image(plan_.sets[im.set], im, one, mine, each, mean_step / n,
                     (out.generation.encode_seconds + out.generation.decode_seconds) / n);
    }
}

void Generator::finish_image(const PlanSet& s, const PlanImage& im, const pipeline::SessionRun& run,
                             const pipeline::SessionResult& out, double seconds, double mean_step, double compute_overhead) {
    const int todo = static_cast<int>(work_.todo.size()), finished = report_.generated;
    const pipeline::GenerationResult& result = out.generation;
    // CLIP truncation of long prompts is expected here (diffusers does the same): counted, and recorded
    // per manifest, instead of warned about per image.
    if (result.prompt_truncated) ++truncated_;
    const auto t_write = std::chrono::steady_clock::now();
    const std::string sha = write_image(c_, im, b_, run.request, result, image_manifest(c_, s, im, b_, out), observer_,
                                        finished);
    const double written = seconds_since(t_write), overhead = compute_overhead + written;
    done_[static_cast<size_t>(&im - plan_.images.data())] = true;
    observer_.checkpoint({"before-log", finished});
    ojson line = timing_line(c_, im, b_, opt_, sha, seconds + written, mean_step, overhead);
    line["images_per_forward"] = run.request.num_images;
    io::append_line_durable(batch_log_path(c_), line.dump());
    cost_.observe(im.method, im.k, unet_rows(im.method, im.k, c_.guidance_scale), mean_step, overhead);
    ++report_.generated;
    ++index_;
    observer_.image_finished(im, index_ - 1, todo, seconds, eta_remaining());
    observer_.checkpoint({"after-image", report_.generated});
}

}  // namespace

namespace {

// Every folder the batch writes into lies inside its output folder: a symbolic link on the way (out/STYLE ->
// /elsewhere) is refused before anything is written.
void refuse_linked_folders(const BatchConfig& c, const BatchPlan& plan) {
    const fs::path out = fs::path(c.out).lexically_normal();
    std::set<fs::path> seen;
    for (const auto& s : plan.sets)
        for (fs::path d = fs::path(s.dir).lexically_normal(); d != out && d.has_relative_path() && seen.insert(d).second;
             d = d.parent_path()) {
            std::error_code ec;
            if (fs::is_symlink(d, ec))
                throw RuntimeError("'" + d.string() + "' is a symbolic link (to '" + fs::read_symlink(d, ec).string() +
                                   "'); batch writes only inside its output folder '" + c.out + "': remove the link");
        }
}

}  // namespace

BatchReport run_batch(const BatchConfig& c, const BatchPlan& plan, const BatchOptions& opt, BatchObserver& observer) {
    const auto t_start = std::chrono::steady_clock::now();
    BatchReport report;
    io::ensure_writable_dir(c.out);
    refuse_linked_folders(c, plan);
    LeftoverSweep sweep(c, plan, opt.shard);
    const Work work = plan_work(c, plan, opt);
    report.skipped = work.survey.finished;
    reconcile_log(c, plan, work.survey, opt.shard);
    if (work.todo.empty()) {
        spdlog::info("all {} image(s) of shard {} are finished; nothing to generate", work.survey.images.size(),
                     opt.shard.str());
        report.sheets = write_sheets_and_gallery(c, plan, opt.shard, false);
        report.seconds = seconds_since(t_start);
        return report;
    }
    refresh_gallery(c, plan);
    warn_if_low_on_space(c, work.todo.size());

    BatchSession session(c, work.ids, opt.threads >= 0 ? opt.threads : c.threads);
    Generator generator(c, plan, opt, observer, work, session, report);
    try {
        generator.run_all();
    } catch (const UsageError&) {
        throw;
    } catch (const Interrupted& e) {
        // SIGINT/SIGTERM: the image in progress is discarded; what is finished is on disk and in batch.jsonl
        // (each line is fsynced); the gallery is brought up to date before the CLI exits 130.
        refresh_gallery(c, plan);
        throw Interrupted(std::string(e.what()) + ": " + std::to_string(report.generated) +
                          " image(s) finished by this run and " + std::to_string(report.skipped) +
                          " finished before are kept; the image in progress was discarded. Run the same command "
                          "again to continue");
    } catch (const std::exception& e) {
        throw RuntimeError(std::string(e.what()) + "\nThe batch stopped. " + std::to_string(report.generated) +
                           " image(s) finished by this run and " + std::to_string(report.skipped) +
                           " finished before are kept; fix the problem and run the same command again to continue.");
    }
    refresh_gallery(c, plan);
    if (generator.truncated())
        spdlog::info("{} prompt(s) were longer than CLIP's 77 tokens and were truncated, as diffusers does "
                     "(long_prompt \"chunk\" keeps them whole)",
                     generator.truncated());
    report.seconds = seconds_since(t_start);
    return report;
}

}  // namespace multilora::batch
