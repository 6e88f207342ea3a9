#!/bin/sh
# The linker for this target (see .cargo/config.toml): plain `cc`, except for pam_otp.so,
# which gets GCC's unwinder linked in statically (libgcc_eh.a) instead of a NEEDED entry
# for libgcc_s.so.1. sshd, sudo, su and login do not load libgcc_s, so with the entry
# every login would load and unload it (about 0.12 ms, half the module's load time).
# The module still unwinds inside itself: a panic is caught at the PAM hooks.
for arg; do
    case $arg in
    */libpam_otp*.so) module=yes ;;
    esac
done
if [ "${module:-no}" = yes ]; then
    for arg; do
        shift
        if [ "$arg" = -lgcc_s ]; then
            set -- "$@" -l:libgcc_eh.a
        else
            set -- "$@" "$arg"
        fi
    done
fi
exec cc "$@"
