// cachet/redis/codec.hpp — moved to cachet/codec.hpp (codecs serve warm restart too, without
// hiredis); kept so that code including this path still compiles.
#pragma once

#include "cachet/codec.hpp"
