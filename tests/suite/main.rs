//! The integration suite, one binary: each module is one area of the product, driven
//! through the real libpam, pamtester, sshd, sudo and the two tools; `support` holds the
//! shared helpers (users, PAM services, state directories, clients, syslog capture).

mod support;

mod brute_force;
mod config_files;
mod fleet;
mod hostile;
mod hostile_faults;
mod hostile_load;
mod otp_admin;
mod otp_setup;
mod pam_stack;
mod sshd;
mod sudo;
mod syslog;
