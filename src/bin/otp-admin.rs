//! `otp-admin`: the command line of `pam_otp::admin` (status, unlock, reset).

fn main() -> std::process::ExitCode {
    pam_otp::admin::main(std::env::args_os())
}
