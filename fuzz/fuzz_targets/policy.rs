//! Fuzzes the administrator's policy: module arguments and the policy file (TOML), and the
//! expansion of the `secret=` template for a user name, which must never escape.
//!
//! Input layout: arguments one per line, then a NUL byte and the policy file's text
//! (no NUL: no policy file). The first argument line doubles as a user name.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use pam_otp_core::decision::lockout_length;
use pam_otp_sys::account::is_safe_user_name;
use pam_otp_sys::policy::{expand_secret_path, parse};

const HOSTILE_NAMES: [&str; 7] = ["alice", "..", "../root", "a/b", ".hidden", "a\0b", "x\ny"];

fuzz_target!(|data: &[u8]| {
    let (args_part, file_part) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    let Ok(args_text) = std::str::from_utf8(args_part) else {
        return;
    };
    let file_text = match file_part.map(std::str::from_utf8) {
        Some(Ok(text)) => Some(text),
        Some(Err(_)) => return,
        None => None,
    };
    let args: Vec<&str> = if args_text.is_empty() {
        Vec::new()
    } else {
        args_text.split('\n').collect()
    };

    let policy = match parse(&args, file_text) {
        Err(error) => {
            let _ = error.to_string();
            return;
        }
        Ok(policy) => policy,
    };
    // The validated ranges the rest of the module relies on.
    let limits = policy.limits;
    assert!(limits.window <= 100);
    assert!(limits.hotp_lookahead <= 1000);
    assert!(limits.lockout >= 1 && limits.lockout <= limits.max_lockout);
    assert!(limits.max_lockout <= 31_536_000);
    for nth in [1, 2, 10, 64, u32::MAX] {
        let length = lockout_length(&limits, nth);
        assert!(length >= limits.lockout && length <= limits.max_lockout);
    }
    assert!(policy.state_dir.is_absolute());
    let prompt = policy.prompt_text();
    assert!(!prompt.is_empty() && prompt.len() <= 200 && !prompt.contains('\0'));

    // The secret template, expanded for hostile and fuzzed user names and homes.
    let fuzzed_name = args.first().copied().unwrap_or("");
    for user in HOSTILE_NAMES.iter().copied().chain([fuzzed_name]) {
        for home in ["/home/alice", "/", fuzzed_name] {
            let expanded = expand_secret_path(&policy.secret, user, Path::new(home));
            if !is_safe_user_name(user) {
                assert!(expanded.is_err(), "{user:?} was used in a path");
            }
            if let Ok(path) = expanded {
                assert!(path.is_absolute(), "{path:?}");
                assert!(
                    !path.components().any(|c| c == Component::ParentDir),
                    "{path:?} escapes"
                );
            }
        }
    }
});
