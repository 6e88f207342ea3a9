//! The state file on disk: a write torn half-way (power lost mid-write) leaves the
//! previous record in force, and a state file of another format is refused, kept, and
//! named with `otp-admin reset` as the way out. Each case puts the bytes there itself,
//! then logs in through pamtester.

use std::fs;
use std::os::unix::fs::FileExt;

use crate::support::admin::otp_admin;
use crate::support::state_record::{
    decode_state, encode_slot, encode_state, newest, next_write_offset, slots, stored_payload,
    stored_state, StoredState, STATE_FORMAT,
};
use crate::support::{hotp, new_secret, Fixture, AUTHINFO_UNAVAIL, AUTH_ERR};

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
fn a_state_file_of_another_format_is_refused_and_otp_admin_reset_is_the_way_out() {
    let f = hotp_fixture();
    let service = f.service("");
    let path = f.state.state_file(&f.user.name);
    let dir = f.state.path.display().to_string();
    let mut counter = 0;
    // A record whose newest state is of the format before this one, and text that is
    // no record file at all.
    let text = "version = 2\nlast_success = 7\n\n[user]\nfailures = 1\n";
    for (what, want) in [
        ("format 3", "format 3 is not supported"),
        ("text", "not a state record file"),
    ] {
        f.login(&service, &hotp(&f.secret, counter))
            .assert_success(&format!("{what}: counter {counter}"));
        counter += 1;
        if what == "text" {
            fs::write(&path, text).unwrap();
        } else {
            let bytes = fs::read(&path).unwrap();
            let before = newest(&slots(&bytes)).unwrap().clone();
            let older = StoredState {
                version: STATE_FORMAT - 1,
                ..decode_state(&before.payload).unwrap()
            };
            let record = encode_slot(before.sequence + 1, true, &encode_state(&older));
            fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .write_all_at(&record, next_write_offset(&bytes) as u64)
                .unwrap();
        }
        let before = fs::read(&path).unwrap();
        // Refused before the prompt, and never overwritten: the next code does not get in.
        f.login(&service, &hotp(&f.secret, counter))
            .assert_failure(AUTHINFO_UNAVAIL, &format!("{what}: the next code"));
        assert_eq!(fs::read(&path).unwrap(), before, "{what}: the file changed");
        let status = otp_admin(&["--state-dir", &dir, "status", &f.user.name]);
        let said = status.stdout.clone() + &status.stderr;
        assert!(
            status.status != Some(0) && said.contains(want) && said.contains("otp-admin reset"),
            "{what}: {status:#?}"
        );
        let reset = otp_admin(&["--state-dir", &dir, "reset", &f.user.name]);
        reset.assert_ok(&format!("{what}: reset"));
        assert!(
            reset.stdout.contains("broken state file") && reset.stdout.contains(want),
            "{what}: {reset:#?}"
        );
        // The state starts over: the counter is the enrollment file's again.
        counter = 0;
        f.login(&service, &hotp(&f.secret, counter))
            .assert_success(&format!("{what}: after the reset"));
        counter += 1;
        assert!(stored_state(&path).is_some());
    }
}
