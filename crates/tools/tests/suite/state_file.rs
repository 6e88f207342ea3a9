//! The state file on disk: a write torn half-way (power lost mid-write) leaves the
//! previous record in force, and a state file of the earlier format (TOML text) is read
//! once and replaced. Each case puts the bytes there itself, then logs in through
//! pamtester.

use std::fs;
use std::os::unix::fs::FileExt;

use crate::support::state_record::{
    decode_state, encode_slot, encode_state, newest, next_write_offset, slots, stored_payload,
    stored_state, StoredState, StoredTally,
};
use crate::support::{hotp, new_secret, Fixture, AUTH_ERR};

fn hotp_fixture() -> Fixture {
    let secret = new_secret();
    Fixture::with_enrollment(
        &secret,
        &format!("version = 1\ntype = \"hotp\"\nsecret = \"{secret}\"\n"),
    )
}

fn next_counter(state: &StoredState) -> u64 {
    let record = state.enrollment().expect("an enrollment record");
    record.next_hotp_counter.expect("an HOTP counter")
}

/// `state` as the earlier version wrote it: a whole file of format-2 TOML, empty and
/// absent values left out.
fn format_2_text(state: &StoredState) -> String {
    let tally = |t: &StoredTally| {
        format!(
            "failures = {}\nlockouts = {}\nlocked_until = {}\nlast_failure = {}\n",
            t.failures, t.lockouts, t.locked_until, t.last_failure
        )
    };
    let mut text = format!(
        "version = 2\nlast_success = {}\n\n[user]\n{}",
        state.last_success,
        tally(&state.all.user)
    );
    if state.all.overflow != StoredTally::default() {
        text += &format!("\n[overflow]\n{}", tally(&state.all.overflow));
    }
    for (source, t) in &state.all.sources {
        text += &format!("\n[sources.{source:?}]\n{}", tally(t));
    }
    for (fingerprint, record) in &state.enrollments {
        text += &format!(
            "\n[enrollments.{fingerprint:?}]\nfile = {:?}\nlast_used = {}\n",
            record.file, record.last_used
        );
        if let Some(step) = record.last_totp_step {
            text += &format!("last_totp_step = {step}\n");
        }
        if let Some(counter) = record.next_hotp_counter {
            text += &format!("next_hotp_counter = {counter}\n");
        }
        if !record.spent_recovery_codes.is_empty() {
            text += &format!("spent_recovery_codes = {:?}\n", record.spent_recovery_codes);
        }
    }
    text
}

#[test]
fn a_torn_write_keeps_the_previous_record_and_the_spent_code_stays_refused() {
    let f = hotp_fixture();
    let service = f.service("");
    let path = f.state.state_file(&f.user.name);
    let mut counter = 0;
    // Each cut: how many bytes of the next record reached the disk.
    for cut in [4, 12, 20, 32, 40, usize::MAX] {
        // Two accepted codes: both slots hold a record.
        for _ in 0..2 {
            f.login(&service, &hotp(&f.secret, counter))
                .assert_success(&format!("counter {counter}"));
            counter += 1;
        }
        let bytes = fs::read(&path).unwrap();
        let before = newest(&slots(&bytes)).unwrap().clone();
        let mut spent = decode_state(&before.payload).unwrap();
        assert_eq!(next_counter(&spent), counter);
        // The record the store would write next (the next code spent), torn: only its
        // first `cut` bytes (half of it for MAX), over the slot the store writes next.
        spent.enrollment_mut().next_hotp_counter = Some(counter + 1);
        let record = encode_slot(before.sequence + 1, true, &encode_state(&spent));
        let cut = cut.min(record.len() / 2);
        let at = next_write_offset(&bytes);
        assert_ne!(
            at, before.offset,
            "the store never writes over the newest record"
        );
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all_at(&record[..cut], at as u64)
            .unwrap();

        // The previous record is used: the last spent code stays refused (a garbage or
        // fresh state would accept it), and the next code gets in.
        let what = format!("torn after {cut} bytes");
        f.login(&service, &hotp(&f.secret, counter - 1))
            .assert_failure(AUTH_ERR, &format!("{what}: replay of the last spent code"));
        f.login(&service, &hotp(&f.secret, counter))
            .assert_success(&format!("{what}: the next code"));
        counter += 1;
        let payload = stored_payload(&path).unwrap();
        assert_eq!(
            next_counter(&decode_state(&payload).unwrap()),
            counter,
            "{what}"
        );
        // The failure in between reset by the success: one record, no garbage.
        pam_otp_core::state::State::from_bytes(&payload).expect("the module's own parser");
    }
}

#[test]
fn a_state_file_of_the_earlier_format_is_read_once_and_replaced() {
    let f = hotp_fixture();
    let service = f.service("");
    let path = f.state.state_file(&f.user.name);
    f.login(&service, &hotp(&f.secret, 0))
        .assert_success("counter 0");
    f.login(&service, &hotp(&f.secret, 1))
        .assert_success("counter 1");
    // What the earlier version kept: the same state as TOML text, a whole file.
    let state = stored_state(&path).unwrap();
    let text = format_2_text(&state);
    assert!(text.parse::<toml::Table>().is_ok(), "not TOML:\n{text}");
    fs::write(&path, &text).unwrap();
    assert!(!fs::read(&path).unwrap().starts_with(b"pam_otp\0"));

    f.login(&service, &hotp(&f.secret, 1))
        .assert_failure(AUTH_ERR, "a code spent before the upgrade");
    // A replay changes nothing, so nothing is written; the next counted failure is.
    f.login(&service, "000000x")
        .assert_failure(AUTH_ERR, "a wrong code after the upgrade");
    let after_failure = fs::read(&path).unwrap();
    assert!(
        after_failure.starts_with(b"pam_otp\0"),
        "the first save writes the new format"
    );
    let upgraded = stored_state(&path).unwrap();
    assert_eq!(
        upgraded.enrollments, state.enrollments,
        "the upgrade kept every enrollment record"
    );
    assert_eq!(upgraded.all.user.failures, state.all.user.failures + 1);
    f.login(&service, &hotp(&f.secret, 2))
        .assert_success("counter 2");
    assert_eq!(next_counter(&stored_state(&path).unwrap()), 3);
    let leftovers: Vec<_> = fs::read_dir(&f.state.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
