// The text of attention_driver.h and of the kept_threads.h it includes, which `tessera compile` writes beside every
// library it builds.
#pragma once

namespace tessera::cpu {

const char* attention_driver_source();
const char* kept_threads_source();

}  // namespace tessera::cpu
