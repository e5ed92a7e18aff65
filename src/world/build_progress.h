// make-world's record of an interrupted build in OUT, so that `--resume` keeps what finished. The phases run
// in order (vae, unet, decoder, then one per concept); each is recorded when it ends, with the losses and
// seconds of every phase so far, in OUT/make-world.progress.json (written atomically). The VAE's float32
// weights go beside it (OUT/make-world.vae.safetensors): the UNet phase encodes its scenes with them, while
// the later phases read the model file, which the UNet and decoder phases write. Within the VAE, UNet and
// decoder phases, OUT/make-world.<phase>.checkpoint keeps the steps done. A finished build removes them all.
#pragma once

#include <string>
#include <vector>

#include "multilora/world/make_world.h"

namespace multilora::models {
class AutoencoderKLImpl;
}

namespace multilora::world {

class BuildProgress {
public:
    // With nothing recorded in OUT, a fresh build: stale checkpoints go and a record with nothing done starts.
    // Otherwise the record is read into `result`'s losses and seconds. Throws UsageError when there is a record
    // and options.resume is false, or when it was made with another seed, --quick or other training settings
    // (`plan`: a description of them).
    BuildProgress(const MakeWorldOptions& options, const std::string& plan, MakeWorldResult& result);

    bool resumed() const { return resumed_; }
    bool done(const std::string& phase) const;
    // Records `phase` as finished, with `result`'s losses and seconds.
    void finish(const std::string& phase, const MakeWorldResult& result);

    // Where `phase` (vae, unet, decoder) keeps its steps done, every `every` steps.
    PhaseCheckpoint checkpoint(const std::string& phase, int every) const;

    void save_vae(models::AutoencoderKLImpl& vae) const;
    // The VAE as the VAE phase left it: its weights (no longer trainable) and scaling factor.
    void load_vae(models::AutoencoderKLImpl& vae) const;
    // The build is complete: the record goes.
    void remove() const;

    static std::string record_path(const std::string& out);

private:
    void write(const MakeWorldResult& result) const;

    std::string out_, plan_;
    uint64_t seed_;
    bool quick_;
    bool resumed_ = false;
    std::vector<std::string> done_;
};

}  // namespace multilora::world
