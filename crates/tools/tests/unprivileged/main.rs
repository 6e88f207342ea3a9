//! The tests that need no root, run by a plain `cargo test`: the brute-force arithmetic of
//! SECURITY.md simulated on the pure rules, and the docs and shipped files checked against
//! each other. The system suite (real libpam, sshd, sudo, Redis; `crates/tools/tests/suite`) changes
//! the machine it runs on: `make test`, as root, runs it in a private mount namespace.

#[path = "../suite/support/rng.rs"]
mod rng;

mod brute_force;
mod config_files;
mod docs_agree;

use std::path::{Path, PathBuf};

/// The root of the source tree (the workspace): `config/`, `packaging/`, the docs.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The one line a plain `cargo test` shows about the system suite, and a check that
/// `make test` does build and run it (so leaving it out here loses nothing).
#[test]
fn the_system_suite_runs_with_make_test_as_root() {
    let makefile = std::fs::read_to_string(repo_root().join("Makefile")).expect("Makefile");
    let feature = makefile
        .lines()
        .find_map(|l| l.strip_prefix("SYSTEM_TESTS := "))
        .expect("the Makefile names the system suite's feature");
    for crate_with_root_tests in ["pam-otp-sys", "pam-otp-tools"] {
        assert!(
            feature
                .split(',')
                .any(|f| f == format!("{crate_with_root_tests}/system-tests")),
            "SYSTEM_TESTS does not enable {crate_with_root_tests}'s root tests: {feature}"
        );
    }
    let test_target = makefile
        .split("\ntest:")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("the Makefile has a test target");
    assert!(
        test_target
            .lines()
            .any(|l| l.contains("$(CARGO) test") && l.contains("--features $(SYSTEM_TESTS)")),
        "make test does not run the system suite:\n{test_target}"
    );
}
