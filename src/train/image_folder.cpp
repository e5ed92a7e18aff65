#include "multilora/train/image_folder.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>

#include "multilora/io/atomic_file.h"
#include "multilora/io/png_writer.h"
#include "multilora/util/error.h"
#include "multilora/util/strings.h"

namespace fs = std::filesystem;

namespace multilora::train {

namespace {

bool is_image(const fs::path& p) {
    std::string ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

// kohya's "N_name" folders repeat their images N times; other folders count once.
int folder_repeats(const fs::path& folder) {
    const std::string name = folder.filename().string();
    const size_t cut = name.find('_');
    if (cut == 0 || cut == std::string::npos) return 1;
    const std::string digits = name.substr(0, cut);
    if (!std::all_of(digits.begin(), digits.end(), [](unsigned char c) { return std::isdigit(c); })) return 1;
    return std::max(1, std::stoi(digits.substr(0, 6)));
}

std::vector<std::pair<fs::path, int>> list_images(const fs::path& dir) {
    std::vector<std::pair<fs::path, int>> out;
    for (const auto& e : fs::directory_iterator(dir)) {
        if (e.is_regular_file() && is_image(e.path())) out.emplace_back(e.path(), 1);
        if (!e.is_directory()) continue;
        const int n = folder_repeats(e.path());
        for (const auto& f : fs::directory_iterator(e.path()))
            if (f.is_regular_file() && is_image(f.path())) out.emplace_back(f.path(), n);
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::string read_caption(const fs::path& image) {
    fs::path txt = image;
    txt.replace_extension(".txt");
    if (!fs::exists(txt)) throw UsageError("training image " + image.string() + " has no caption file " + txt.string());
    std::string caption = trim(io::read_file(txt.string()));
    if (caption.empty()) throw UsageError("caption file " + txt.string() + " is empty");
    return caption;
}

std::vector<uint8_t> decode(const std::string& path, int* w, int* h) {
    try {
        return io::decode_png_rgb(io::read_file(path), w, h);
    } catch (const RuntimeError& e) {
        throw UsageError("cannot read training image " + path + ": " + e.what());
    }
}

}  // namespace

ImageFolder scan_image_folder(const std::string& dir) {
    if (!fs::is_directory(dir)) throw UsageError("--data " + dir + " is not a folder");
    ImageFolder folder;
    for (const auto& [path, repeats] : list_images(dir)) {
        int w = 0, h = 0;
        decode(path.string(), &w, &h);
        if (folder.items.empty()) folder.width = w, folder.height = h;
        if (w != folder.width || h != folder.height)
            throw UsageError("training images differ in size: " + folder.items.front().image_path + " is " +
                             std::to_string(folder.width) + "x" + std::to_string(folder.height) + ", " + path.string() +
                             " is " + std::to_string(w) + "x" + std::to_string(h) + " (resize them to one size)");
        folder.items.push_back({path.string(), read_caption(path), repeats});
    }
    if (folder.items.empty()) throw UsageError("--data " + dir + " holds no images (.png, .jpg, .jpeg, .bmp)");
    if (folder.width % 8 || folder.height % 8)
        throw UsageError("training images are " + std::to_string(folder.width) + "x" + std::to_string(folder.height) +
                         ": both sides must be multiples of 8");
    return folder;
}

at::Tensor rgb8_to_tensor(const uint8_t* rgb, int width, int height) {
    at::Tensor t = torch::from_blob(const_cast<uint8_t*>(rgb), {height, width, 3}, at::kByte);
    return t.permute({2, 0, 1}).to(at::kFloat).div(127.5).sub(1.0).contiguous();
}

at::Tensor load_image_tensor(const std::string& path) {
    int w = 0, h = 0;
    std::vector<uint8_t> px = decode(path, &w, &h);
    return rgb8_to_tensor(px.data(), w, h);
}

}  // namespace multilora::train
