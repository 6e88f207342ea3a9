//! `otp-setup`: a user enrolls for one-time codes (see `pam_otp::setup`).

fn main() -> std::process::ExitCode {
    pam_otp::setup::main()
}
