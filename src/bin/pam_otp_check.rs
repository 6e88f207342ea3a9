//! `pam_otp_check`, the setuid-root checker: the program is `pam_otp::check_program`.

fn main() {
    std::process::exit(pam_otp::check_program::main());
}
