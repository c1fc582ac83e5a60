// libFuzzer's driver entry point (compiler-rt, linked by -sanitize=fuzzer).
//
// Why a shim: the fuzz binary keeps its own `main` (to pick a target by name and list
// them) and hands control to libFuzzer through this function instead of defining
// LLVMFuzzerTestOneInput and using libFuzzer's main. Header only; the symbol comes from
// libclang_rt.fuzzer, so this module exists only in fuzz builds (scripts/fuzz).
#ifndef CYARDFUZZ_SHIM_H
#define CYARDFUZZ_SHIM_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
