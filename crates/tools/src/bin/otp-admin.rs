//! `otp-admin`: the command line of `pam_otp_tools::admin` (status, unlock, reset).

fn main() -> std::process::ExitCode {
    pam_otp_tools::admin::main(std::env::args_os())
}
