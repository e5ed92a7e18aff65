// A folder of training images with captions, kohya's dataset convention: IMAGE.png (or .jpg, .jpeg, .bmp,
// .webp is refused) beside IMAGE.txt holding its caption. Images may also sit in subfolders named
// N_name (kohya's repeats: each image counts N times). Every image must have a caption and the same size,
// a multiple of 8.
#pragma once

#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace multilora::train {

struct CaptionedImage {
    std::string image_path;
    std::string caption;
    int repeats = 1;
};

struct ImageFolder {
    std::vector<CaptionedImage> items;  // sorted by path
    int width = 0, height = 0;
};

// Scans and checks the folder (decoding every image once). Throws UsageError naming the first problem:
// a missing folder, no images, an image without its .txt (or an empty caption), an unreadable image,
// mixed sizes, a side that is not a multiple of 8.
ImageFolder scan_image_folder(const std::string& dir);

// An image as a [3, H, W] float tensor in [-1, 1] (the VAE's input range).
at::Tensor load_image_tensor(const std::string& path);

// 8-bit RGB pixels (row-major) -> [3, H, W] in [-1, 1].
at::Tensor rgb8_to_tensor(const uint8_t* rgb, int width, int height);

}  // namespace multilora::train
