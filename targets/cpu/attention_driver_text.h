// The text of attention_driver.h, which `tessera compile` writes beside every library it builds.
#pragma once

namespace tessera::cpu {

const char* attention_driver_source();

}  // namespace tessera::cpu
