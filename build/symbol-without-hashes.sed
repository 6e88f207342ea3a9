# A function's symbol without the hashes that change with the compiler, the
# dependencies and the build profile (used with `sed -E`): legacy symbols end in
# `17h<16 hex digits>E`; v0 symbols name each crate as `Cs<base-62 hash>_`.
s/17h[0-9a-f]{16}E$/E/
s/Cs[0-9A-Za-z]+_/Cs_/g
