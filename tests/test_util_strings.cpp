// util/strings: split and trim, by hand.
#include <gtest/gtest.h>

#include "multilora/util/strings.h"

using multilora::split;
using multilora::trim;

TEST(UtilStrings, SplitKeepsEmptyParts) {
    EXPECT_EQ(split("a.b..c", '.'), (std::vector<std::string>{"a", "b", "", "c"}));
    EXPECT_EQ(split("", ','), (std::vector<std::string>{""}));
    EXPECT_EQ(split("x,", ','), (std::vector<std::string>{"x", ""}));
}

TEST(UtilStrings, TrimStripsTheGivenCharacters) {
    EXPECT_EQ(trim("  a b \t\n"), "a b");
    EXPECT_EQ(trim(" \t "), "");
    EXPECT_EQ(trim(",a, b,", ","), "a, b");
    EXPECT_EQ(trim(" \ta ", " "), "\ta");
}
