// The standard library of patterns (dsl/prelude.attn), always loaded before user specs.
#pragma once

namespace tessera::dsl {

// The prelude's DSL source, embedded at build time. Diagnostics in it report the file name "<prelude>".
const char* prelude_text();

}  // namespace tessera::dsl
