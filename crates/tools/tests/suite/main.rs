//! The integration suite, one binary: each module is one area of the product, driven
//! through the real libpam, pamtester, sshd, sudo and the two tools; `support` holds the
//! shared helpers (users, PAM services, state directories, clients, syslog capture).
//! It needs root and changes the system it runs on: `make test` runs it, as root, in a
//! private mount namespace (the `system-tests` feature builds it); the tests that need
//! no root are in `tests/unprivileged`.

mod support;

mod demo;
mod doc_lines;
mod doctor;
mod fleet;
mod fleet_differential;
mod fleet_rules;
mod fleet_sentinel;
mod fleet_trust;
mod hostile;
mod hostile_faults;
mod hostile_load;
mod log_injection;
mod nullok_off;
mod otp_admin;
mod otp_admin_output;
mod otp_admin_report;
mod otp_setup;
mod otp_setup_umask;
mod package_rollback;
mod pam_stack;
mod renew;
mod rollout;
mod root_owned_paths;
mod screen_locker;
mod secret_store;
mod split_pass;
mod sshd;
mod state_file;
mod state_model;
mod sudo;
mod sudo_login;
mod syslog;
