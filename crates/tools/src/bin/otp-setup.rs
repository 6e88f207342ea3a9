//! `otp-setup`: a user enrolls for one-time codes (see `pam_otp_tools::setup`).

fn main() -> std::process::ExitCode {
    pam_otp_tools::setup::main()
}
