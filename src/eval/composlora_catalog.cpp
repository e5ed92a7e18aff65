// The ComposLoRA testbed's 22 LoRAs (ids, categories, names, trigger words), as facts from the paper's
// public lora_info files, kept here so that `multilora evaluate` can describe the elements of a ComposLoRA
// run even when no lora_info file is at hand. One row per LoRA: [style, id, category, name, [triggers]].
#include "composlora_catalog.h"

namespace multilora::eval::detail {

const char* composlora_catalog_json() {
    return R"json([
["anime", "character_1", "character", "Kamado Nezuko", ["kamado nezuko", "black hair", "pink eyes", "forehead"]],
["anime", "character_2", "character", "Texas the Omertosa in Arknights", ["omertosa", "1girl", "wolf ears", "long hair"]],
["anime", "character_3", "character", "Son Goku", ["son goku", "spiked hair", "muscular male", "wristband"]],
["anime", "clothing_1", "clothing", "Garreg Mach Monastery Uniform", ["gmuniform", "blue thighhighs", "long sleeves"]],
["anime", "clothing_2", "clothing", "Zero Suit (Metroid)", ["zero suit", "blue gloves", "high heels"]],
["anime", "style_1", "style", "Hand-drawn Style", ["lineart", "hand-drawn style"]],
["anime", "style_2", "style", "Shuimobysim (Chinese Ink Wash Style)", ["shuimobysim", "traditional chinese ink painting"]],
["anime", "background_1", "background", "Bamboolight Background", ["bamboolight", "outdoors", "bamboo"]],
["anime", "background_2", "background", "Auroral Background", ["auroral", "starry sky", "outdoors"]],
["anime", "object_1", "object", "Huge Two-Handed Burger", ["two-handed burger", "holding a huge burger with both hands"]],
["anime", "object_2", "object", "Toast", ["toast", "toast in mouth"]],
["reality", "character_1", "character", "IU (Lee Ji Eun, Korean singer)", ["iu1", "long straight black hair", "hazel eyes", "diamond stud earrings"]],
["reality", "character_2", "character", "Scarlett Johansson", ["scarlett", "short red hair", "blue eyes"]],
["reality", "character_3", "character", "The Rock (Dwayne Johnson)", ["th3r0ck with no hair", "muscular male", "serious look on his face"]],
["reality", "clothing_1", "clothing", "Thai University Uniform", ["mahalaiuniform", "white shirt short sleeves", "black pencil skirt"]],
["reality", "clothing_2", "clothing", "School Dress", ["school uniform", "white shirt", "red tie", "blue pleated microskirt"]],
["reality", "style_1", "style", "Japanese Film Color Style", ["film overlay", "film grain"]],
["reality", "style_2", "style", "Bright Style", ["bright lighting"]],
["reality", "background_1", "background", "Library Bookshelf Background", ["lib_bg", "library bookshelf"]],
["reality", "background_2", "background", "Forest Background", ["slg", "river", "forest"]],
["reality", "object_1", "object", "Umbrella", ["transparent umbrella"]],
["reality", "object_2", "object", "Bubble Gum", ["blow bubble gum"]]
])json";
}

}  // namespace multilora::eval::detail
