# tests/sh/attn_emu.sh: the CUDA kernels of runtime/mdlrt_attn.cu run on the
# CPU by tests/gpu/attn_emu.cpp (PTX primitives emulated, cp.async landing
# only at its wait, ASan), against a double reference; no GPU needed.
# Skips (77) without a C++20 compiler that has <barrier>.
# TIMEOUT: 600
CXX=${CXX:-g++}
exe=$BUILD/attn_emu
printf '#include <barrier>\nint main(){std::barrier<> b(1);b.arrive_and_wait();}\n' \
  > "$BUILD/attn_emu_probe.cpp"
$CXX -std=c++20 -pthread -o "$BUILD/attn_emu_probe" "$BUILD/attn_emu_probe.cpp" \
  2>/dev/null || exit 77
$CXX -std=c++20 -O1 -g -pthread -fsanitize=address -Wall -Wno-unknown-pragmas \
  -Iruntime -o "$exe" tests/gpu/attn_emu.cpp || exit 1
"$exe" 1
