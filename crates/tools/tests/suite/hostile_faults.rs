//! Faults during state updates: pamtester killed with SIGKILL at random moments,
//! hundreds of times, and a state directory that is full or read-only. The state must
//! always parse, no TOTP step may be accepted twice, the HOTP counter never moves back,
//! and a state that cannot be saved means a refused login, with a clear log line.
//! Run as root: `cargo test --test suite -- hostile_faults::`.

use crate::support;
use crate::support::hostile;

use std::fs;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use hostile::{run_logged, Mount, Rng};
use support::state_record::{decode_state, stored_payload, stored_state, StoredState};
use support::{
    hotp, now, oathtool, totp_at, wait_for_step_margin, Fixture, Service, AUTHINFO_UNAVAIL,
    AUTH_ERR,
};

/// pamtester itself (no wrapper process, so SIGKILL hits the process doing the login),
/// its clock moved by `offset` seconds through libfaketime when given.
fn spawn_pamtester_direct(service: &Service, user: &str, offset: Option<i64>) -> Child {
    let mut command = Command::new("pamtester");
    command
        .args([service.name.as_str(), user, "authenticate"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(offset) = offset {
        let libfaketime = support::multiarch_lib_dir().join("faketime/libfaketime.so.1");
        assert!(
            libfaketime.exists(),
            "{} missing: apt-get install faketime",
            libfaketime.display()
        );
        command
            .env("LD_PRELOAD", &libfaketime)
            .env("FAKETIME", format!("{offset:+}"));
    }
    command.spawn().expect("start pamtester")
}

/// What one possibly-killed login did.
struct Run {
    killed: bool,
    succeeded: bool,
    elapsed: Duration,
}

/// Starts a login, answers it, and sends SIGKILL after `kill_after` (unless it ended first).
fn login_and_kill(
    service: &Service,
    user: &str,
    answer: &str,
    offset: Option<i64>,
    kill_after: Option<Duration>,
) -> Run {
    let started = Instant::now();
    let mut child = spawn_pamtester_direct(service, user, offset);
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(format!("{answer}\n").as_bytes());
    }
    if let Some(delay) = kill_after {
        sleep(delay);
        let _ = child.kill();
    }
    let pid = child.id();
    let out = child.wait_with_output().expect("wait for pamtester");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let killed = out.status.signal() == Some(libc::SIGKILL);
    if offset.is_some() {
        // libfaketime keeps a semaphore and a shared memory segment named after the pid and
        // removes them at exit; a killed process cannot, and a later `faketime` that gets
        // the same pid would then fail ("sem_open: File exists").
        let _ = std::fs::remove_file(format!("/dev/shm/faketime_shm_{pid}"));
        let _ = std::fs::remove_file(format!("/dev/shm/sem.faketime_sem_{pid}"));
    }
    let succeeded =
        out.status.success() && stdout.contains("pamtester: successfully authenticated");
    assert!(
        killed || out.status.code() == Some(0) || out.status.code() == Some(1),
        "pamtester ended oddly: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Run {
        killed,
        succeeded,
        elapsed: started.elapsed(),
    }
}

/// The state in the newest record, which must decode both by the tests' own decoder and by
/// the module's own parser (else every later login of the user would fail closed).
fn checked_state(path: &Path) -> Option<StoredState> {
    let payload = stored_payload(path)?;
    let state = decode_state(&payload).unwrap_or_else(|e| panic!("state {}: {e}", path.display()));
    pam_otp_core::state::State::from_bytes(&payload)
        .unwrap_or_else(|e| panic!("the module cannot parse {}: {e}", path.display()));
    Some(state)
}

/// The only enrollment's newest accepted TOTP step, if any.
fn last_totp_step(state: &Option<StoredState>) -> Option<u64> {
    state.as_ref()?.enrollment()?.last_totp_step
}

/// The only enrollment's next acceptable HOTP counter (0 before the first login).
fn next_hotp_counter(state: &Option<StoredState>) -> u64 {
    state
        .as_ref()
        .and_then(|s| s.enrollment()?.next_hotp_counter)
        .unwrap_or(0)
}

/// The user-wide failure count (0 before the first login).
fn user_failures(state: &Option<StoredState>) -> u32 {
    state.as_ref().map_or(0, |s| s.all.user.failures)
}

/// Codes for HOTP counters (= TOTP steps) `first..first+count`, from one oathtool call.
fn codes_from(secret: &str, first: u64, count: u64) -> Vec<String> {
    let out = oathtool(&[
        "--hotp",
        "-b",
        "-c",
        &first.to_string(),
        "-w",
        &(count - 1).to_string(),
        secret,
    ]);
    let codes: Vec<String> = out.lines().map(str::to_string).collect();
    assert_eq!(codes.len() as u64, count, "oathtool -w gave {out:?}");
    codes
}

/// Counts of what the kills hit, printed and checked at the end.
#[derive(Default, Debug)]
struct Tally {
    runs: u32,
    killed_before_save: u32,
    killed_after_save: u32,
    /// Killed between creating the temporary file and renaming it (the file was left behind).
    killed_mid_write: u32,
    completed_accepted: u32,
    completed_refused: u32,
}

impl Tally {
    fn check(&self, what: &str) {
        eprintln!("{what}: {self:?}");
        let killed = self.killed_before_save + self.killed_after_save;
        assert!(
            killed >= KILLS_WANTED,
            "{what}: only {killed} runs were killed"
        );
        assert!(
            self.killed_after_save >= 1 && self.killed_before_save >= 1,
            "{what}: the kills did not straddle the state update"
        );
        assert!(
            self.completed_accepted >= 1 && self.completed_refused >= 1,
            "{what}: no completed run to check"
        );
    }
}

/// Whether a temporary state file was left in the state directory (a kill mid-write).
fn temp_left(dir: &Path) -> bool {
    fs::read_dir(dir)
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".tmp"))
}

/// When to send SIGKILL: at a uniformly random moment within the time a login takes
/// now, learnt from the latest logins left alone (the load on the machine changes);
/// every fourth round is left alone, so completed verdicts are checked too.
struct KillTimer {
    recent: std::collections::VecDeque<Duration>,
}

impl KillTimer {
    fn new() -> KillTimer {
        KillTimer {
            recent: std::collections::VecDeque::new(),
        }
    }

    fn observe(&mut self, run: &Run) {
        if !run.killed {
            self.recent.push_back(run.elapsed);
            if self.recent.len() > 9 {
                self.recent.pop_front();
            }
        }
    }

    fn delay(&self, round: u64, rng: &mut Rng) -> Option<Duration> {
        if round.is_multiple_of(4) {
            return None;
        }
        let mut sorted: Vec<Duration> = self.recent.iter().copied().collect();
        sorted.sort();
        let median = sorted[sorted.len() / 2];
        Some(Duration::from_micros(
            rng.below(median.as_micros() as u64 + 1),
        ))
    }
}

const ROUNDS: u64 = 300;
/// Kills wanted before the tally is judged. A round whose login ends before its kill is
/// not killed; on a loaded machine login times vary so much that 300 rounds can bring
/// fewer, so rounds go on (up to [`MAX_ROUNDS`]) until there are this many.
const KILLS_WANTED: u32 = 100;
const MAX_ROUNDS: u64 = 3 * ROUNDS;

#[test]
fn sigkill_during_totp_logins_never_corrupts_or_replays() {
    let f = Fixture::totp();
    // Lockout off so that every attempt, right or wrong, writes the state.
    let service = f.service("max_failures=0");
    let path = f.state.state_file(&f.user.name);
    let mut rng = Rng::from_os("totp kills");
    // Fake steps from well ahead of now, one per round; codes for all of them at once.
    let base = (now() as u64) / 30 + 100;
    let codes = codes_from(&f.secret, base - 3, MAX_ROUNDS + 10);
    let code_for = |step: u64| codes[(step - (base - 3)) as usize].clone();
    let offset_for = |step: u64| (step * 30 + 12) as i64 - now();

    // Warm-up logins (steps base-2, base-1, base) also tell how long one takes.
    let mut timer = KillTimer::new();
    for warm in base - 2..=base {
        let run = login_and_kill(
            &service,
            &f.user.name,
            &code_for(warm),
            Some(offset_for(warm)),
            None,
        );
        assert!(run.succeeded, "warm-up login at step {warm} failed");
        timer.observe(&run);
    }

    let mut tally = Tally::default();
    let mut rounds = 0;
    for round in 1..=MAX_ROUNDS {
        let killed = tally.killed_before_save + tally.killed_after_save;
        if round > ROUNDS && killed >= KILLS_WANTED {
            break;
        }
        rounds = round;
        let clock_step = base + round;
        let before = checked_state(&path);
        let last = last_totp_step(&before);
        let failures = user_failures(&before);
        let step = match (rng.below(10), last) {
            (0..=1, Some(last)) => last - rng.below(2), // replay of an accepted or older step
            (2..=3, _) => clock_step - 1,               // the previous step, inside the window
            _ => clock_step,                            // the current step
        };
        let kill_after = timer.delay(round, &mut rng);
        let temp_before = temp_left(&f.state.path);
        let run = login_and_kill(
            &service,
            &f.user.name,
            &code_for(step),
            Some(offset_for(clock_step)),
            kill_after,
        );
        if kill_after.is_none() {
            timer.observe(&run);
        }
        let after = checked_state(&path);
        let new_last = last_totp_step(&after);
        let new_failures = user_failures(&after);
        let what = format!("round {round}: step {step} at clock step {clock_step}, last {last:?}, run killed={} ok={}", run.killed, run.succeeded);

        assert!(
            new_last >= last,
            "{what}: last_totp_step went back to {new_last:?}"
        );
        let fresh = last.is_none_or(|l| step > l);
        if new_last != last {
            assert!(fresh, "{what}: a spent step was accepted again");
            assert_eq!(new_last, Some(step), "{what}");
        }
        if run.succeeded {
            assert!(fresh, "{what}: replayed code accepted");
            assert_eq!(new_last, Some(step), "{what}: accepted but not recorded");
        }
        if !run.killed {
            assert_eq!(run.succeeded, fresh, "{what}: wrong verdict");
        }
        // One login changes the failure count by one (or resets it), never more.
        let changed = after != before;
        assert!(
            !changed
                || (new_last != last && new_failures == 0)
                || (new_last == last && new_failures == failures + 1),
            "{what}: failures {failures} -> {new_failures}"
        );
        tally.runs += 1;
        if run.killed && !temp_before && temp_left(&f.state.path) {
            tally.killed_mid_write += 1;
        }
        match (run.killed, changed) {
            (true, false) => tally.killed_before_save += 1,
            (true, true) => tally.killed_after_save += 1,
            (false, _) if run.succeeded => tally.completed_accepted += 1,
            (false, _) => tally.completed_refused += 1,
        }
    }
    tally.check("totp kills");
    // Nothing stale is left behind: the next step's code still gets in, a replay does not.
    let next = base + rounds + 1;
    let last = last_totp_step(&checked_state(&path)).unwrap();
    let run = login_and_kill(
        &service,
        &f.user.name,
        &code_for(next),
        Some(offset_for(next)),
        None,
    );
    assert!(run.succeeded, "login after the kills failed");
    let replay = login_and_kill(
        &service,
        &f.user.name,
        &code_for(last),
        Some(offset_for(next)),
        None,
    );
    assert!(!replay.succeeded, "replay after the kills accepted");
}

#[test]
fn sigkill_during_hotp_logins_never_moves_the_counter_back() {
    let secret = support::new_secret();
    let f = Fixture::with_enrollment(
        &secret,
        &format!("version = 1\ntype = \"hotp\"\nsecret = \"{secret}\"\n"),
    );
    let service = f.service("max_failures=0");
    let path = f.state.state_file(&f.user.name);
    let mut rng = Rng::from_os("hotp kills");
    // At most 3 counters per round plus the warm-up: precompute them all.
    let codes = codes_from(&secret, 0, 3 * ROUNDS + 40);

    let mut timer = KillTimer::new();
    for (warm, code) in codes.iter().enumerate().take(3) {
        let run = login_and_kill(&service, &f.user.name, code, None, None);
        assert!(run.succeeded, "warm-up login at counter {warm} failed");
        timer.observe(&run);
    }

    let mut tally = Tally::default();
    for round in 1..=ROUNDS {
        let before = checked_state(&path);
        let next = next_hotp_counter(&before);
        let counter = match rng.below(10) {
            0..=1 => next.saturating_sub(1 + rng.below(2)), // spent
            2 => next + 11 + rng.below(2),                  // beyond the lookahead of 10
            _ => next + rng.below(3),                       // acceptable
        };
        let kill_after = timer.delay(round, &mut rng);
        let temp_before = temp_left(&f.state.path);
        let run = login_and_kill(
            &service,
            &f.user.name,
            &codes[counter as usize],
            None,
            kill_after,
        );
        if kill_after.is_none() {
            timer.observe(&run);
        }
        let after = checked_state(&path);
        let new_next = next_hotp_counter(&after);
        let what = format!(
            "round {round}: counter {counter}, next {next}, killed={} ok={}",
            run.killed, run.succeeded
        );
        assert!(new_next >= next, "{what}: counter moved back to {new_next}");
        let acceptable = (next..=next + 10).contains(&counter);
        if new_next != next {
            assert!(acceptable, "{what}: moved by an unacceptable code");
            assert_eq!(new_next, counter + 1, "{what}");
        }
        if run.succeeded {
            assert!(acceptable, "{what}: unacceptable code accepted");
            assert_eq!(new_next, counter + 1, "{what}: accepted but not recorded");
        }
        if !run.killed {
            assert_eq!(run.succeeded, acceptable, "{what}: wrong verdict");
        }
        tally.runs += 1;
        if run.killed && !temp_before && temp_left(&f.state.path) {
            tally.killed_mid_write += 1;
        }
        match (run.killed, after != before) {
            (true, false) => tally.killed_before_save += 1,
            (true, true) => tally.killed_after_save += 1,
            (false, _) if run.succeeded => tally.completed_accepted += 1,
            (false, _) => tally.completed_refused += 1,
        }
    }
    tally.check("hotp kills");
    let state = checked_state(&path).expect("a state file");
    let next = state.enrollment().unwrap().next_hotp_counter.unwrap();
    let run = login_and_kill(&service, &f.user.name, &hotp(&secret, next), None, None);
    assert!(run.succeeded, "login after the kills failed");
}

/// The state file's bytes, and that no temporary file was left next to it.
fn state_bytes(f: &Fixture) -> Vec<u8> {
    let leftovers: Vec<_> = fs::read_dir(&f.state.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    fs::read(f.state.state_file(&f.user.name)).expect("state file")
}

/// A full file system: a user who has a state record keeps logging in (records are
/// rewritten in blocks the file already owns), and every spent code is still retired; a
/// user whose record would need a new file is refused, with a clear log line, and that
/// refusal spends nothing.
#[test]
fn full_state_dir_saves_in_place_and_refuses_what_needs_a_new_file() {
    let f = Fixture::totp();
    let _tmpfs = Mount::tmpfs(&f.state.path, "64k");
    let service = f.service("");
    wait_for_step_margin(8);
    let t = now();
    let first = run_logged(&service, &f.user.name, &totp_at(&f.secret, t, &[]), None);
    first
        .outcome
        .assert_success("first login on the small tmpfs");
    let saved = state_bytes(&f);

    // Fill the file system to the last page.
    let mut filler = fs::File::create(f.state.path.join("filler")).unwrap();
    let chunk = vec![0u8; 4096];
    let full = loop {
        if let Err(e) = filler.write_all(&chunk) {
            break e;
        }
    };
    assert_eq!(full.raw_os_error(), Some(libc::ENOSPC), "{full}");
    drop(filler);

    // The next step's code is retired in place: accepted once, then refused.
    let next_code = totp_at(&f.secret, t + 30, &[]);
    let run = run_logged(&service, &f.user.name, &next_code, Some("+30s"));
    run.outcome
        .assert_success("right code, full disk, existing record");
    assert_ne!(state_bytes(&f), saved, "the spent code was not recorded");
    let run = run_logged(&service, &f.user.name, &next_code, Some("+30s"));
    run.outcome
        .assert_failure(AUTH_ERR, "replay on a full disk");
    // A wrong code is counted, in place, on the full disk (a replay is not counted).
    let run = run_logged(&service, &f.user.name, "000000x", Some("+30s"));
    run.outcome
        .assert_failure(AUTH_ERR, "wrong code on a full disk");
    let failures = stored_state(&f.state.state_file(&f.user.name)).map(|s| s.all.user.failures);
    assert_eq!(failures, Some(1), "the failure was counted");

    // A user without a record yet needs a new file: refused, not a free pass.
    let newcomer_secret = support::new_secret();
    let newcomer = support::TestUser::new();
    newcomer.enroll(&support::totp_enrollment(&newcomer_secret));
    let newcomer_code = totp_at(&newcomer_secret, t + 30, &[]);
    let run = run_logged(&service, &newcomer.name, &newcomer_code, Some("+30s"));
    run.outcome
        .assert_failure(AUTHINFO_UNAVAIL, "right code, full disk, new record");
    run.assert_logged(
        &["state", "No space left on device", &newcomer.name],
        "right code, full disk, new record",
    );
    assert!(!f.state.state_file(&newcomer.name).exists());

    // With room again, the very same code works: refusing it did not spend it.
    fs::remove_file(f.state.path.join("filler")).unwrap();
    let run = run_logged(&service, &newcomer.name, &newcomer_code, Some("+30s"));
    run.outcome.assert_success("same code after freeing space");
}

#[test]
fn read_only_state_dir_fails_closed_and_keeps_the_state() {
    let f = Fixture::totp();
    let service = f.service("");
    wait_for_step_margin(8);
    let t = now();
    let first = run_logged(&service, &f.user.name, &totp_at(&f.secret, t, &[]), None);
    first.outcome.assert_success("first login");
    let saved = state_bytes(&f);

    let next_code = totp_at(&f.secret, t + 30, &[]);
    {
        let _read_only = Mount::read_only(&f.state.path);
        let run = run_logged(&service, &f.user.name, &next_code, Some("+30s"));
        run.assert_refused(
            AUTHINFO_UNAVAIL,
            &["state", "Read-only file system", &f.user.name],
            "read-only state_dir",
        );
        eprintln!("read-only: {:?}", run.module_lines());
        assert_eq!(state_bytes(&f), saved, "state changed on a read-only mount");
    }
    // A fresh read-only tmpfs (no lock file yet) is refused the same way.
    let other = Fixture::totp();
    {
        let _tmpfs = Mount::tmpfs(&other.state.path, "64k");
        Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&other.state.path)
            .status()
            .unwrap();
        let run = run_logged(&other.service(""), &other.user.name, "123456", None);
        run.assert_refused(
            AUTHINFO_UNAVAIL,
            &["state", "Read-only file system"],
            "read-only tmpfs",
        );
    }
    // Writable again: the same code was not spent and now works.
    let run = run_logged(&service, &f.user.name, &next_code, Some("+30s"));
    run.outcome
        .assert_success("same code on a writable state_dir");
}
