//! `otp-setup` from the outside: run as a real user, its terminal QR code
//! painted as a terminal shows it and decoded by `zbarimg`, its PNG and SVG decoded,
//! the enrollment it writes used for real logins through pam_otp.so and `pamtester`
//! with codes from `oathtool`, its confirmation prompt driven on a pseudo-terminal,
//! and `~/.google_authenticator` files made by Debian's `google-authenticator` imported.
//! Must run as root (it creates users).

use crate::support;
use crate::support::enrollment_tools;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use enrollment_tools::{
    as_user_argv, decode_drawing, file_secret, listing, parse_printed, rsvg_convert, run_as, text,
    ts_user, uri_parameter, visible_columns, zbarimg, OnTerminal, Printed, Theme, Workspace, EXACT,
    XTERM_LIKE,
};
use support::{
    hotp, oathtool, run_pamtester, totp, wait_for_step_margin, wrong_totp, Service, StateDir,
    TestUser, AUTH_ERR,
};

const UTF8: &str = "C.UTF-8";
const PROMPT: &str = "Enter the code your app shows now: ";

fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// The terminal drawing decodes to the printed URI on light and dark themes, in a
/// terminal that draws blocks exactly and in one that leaves a seam (like xterm).
fn assert_drawing_scans(printed: &Printed, workspace: &Workspace) {
    for theme in [Theme::Light, Theme::Dark] {
        for font in [EXACT, XTERM_LIKE] {
            let name = format!("{theme:?}-{}-{}.pgm", font.cell, font.gap);
            let decoded = decode_drawing(&printed.drawing, theme, font, &workspace.dir, &name);
            assert_eq!(
                decoded, printed.uri,
                "terminal QR on a {theme:?} theme, {font:?}"
            );
        }
    }
}

/// One user enrolled by `otp-setup --no-confirm ARGS`, with everything checked that
/// holds for every enrollment.
struct Enrolled {
    user: TestUser,
    workspace: Workspace,
    printed: Printed,
    file_text: String,
    state: StateDir,
}

impl Enrolled {
    fn new(args: &[&str]) -> Enrolled {
        let user = ts_user();
        let workspace = Workspace::new();
        let mut all_args = vec!["--no-confirm"];
        all_args.extend_from_slice(args);
        let out = run_as(&user, UTF8, workspace.binary().to_str().unwrap(), &all_args);
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "otp-setup {all_args:?} failed\n{stdout}\n{}",
            text(&out.stderr)
        );
        let printed = parse_printed(&stdout);

        // The file: the user's, mode 0600, holding the printed secret.
        let meta = fs::symlink_metadata(user.otp_path()).expect("~/.otp.toml written");
        assert!(meta.is_file());
        assert_eq!(meta.mode() & 0o7777, 0o600, "mode of ~/.otp.toml");
        assert_eq!((meta.uid(), meta.gid()), (user.uid, user.gid));
        let file_text = fs::read_to_string(user.otp_path()).unwrap();
        assert_eq!(
            file_secret(&file_text),
            printed.secret,
            "file vs Secret: line"
        );
        assert_eq!(
            uri_parameter(&printed.uri, "secret").as_deref(),
            Some(printed.secret.as_str()),
            "URI vs Secret: line"
        );
        assert_eq!(
            listing(&user.home)
                .iter()
                .filter(|n| n.contains(".tmp"))
                .count(),
            0,
            "no temporary file left in the home directory"
        );

        // The terminal drawing decodes to the printed URI, on light and dark themes.
        if !printed.drawing.is_empty() {
            for line in &printed.drawing {
                assert!(
                    visible_columns(line) <= 80,
                    "wider than 80 columns: {line:?}"
                );
            }
            assert_drawing_scans(&printed, &workspace);
        }

        // Recovery codes: printed once, stored only as salted hashes.
        let stored = file_text.matches("\"sha256:").count();
        assert_eq!(stored, printed.recovery_codes.len());
        for code in &printed.recovery_codes {
            let bare: String = code.chars().filter(|c| *c != '-').collect();
            assert!(!file_text.contains(code.as_str()) && !file_text.contains(&bare));
        }
        Enrolled {
            user,
            workspace,
            printed,
            file_text,
            state: StateDir::new(),
        }
    }

    fn login(&self, service: &Service, answer: &str) -> support::Outcome {
        run_pamtester(service, &self.user.name, answer, None)
    }
}

#[test]
fn default_enrollment_prints_a_scannable_terminal_qr_and_a_matching_uri() {
    let e = Enrolled::new(&[]);
    let host = host_name();
    let user = &e.user.name;
    assert!(
        e.printed
            .uri
            .starts_with(&format!("otpauth://totp/{host}:{user}%40{host}?")),
        "{}",
        e.printed.uri
    );
    assert_eq!(
        uri_parameter(&e.printed.uri, "issuer").as_deref(),
        Some(host.as_str())
    );
    // SHA1, 6 digits, 30 s: the format's defaults, left out to keep the code small (apps
    // assume them; the logins below use oathtool's defaults, which are the same).
    for name in ["algorithm", "digits", "period"] {
        assert_eq!(uri_parameter(&e.printed.uri, name), None, "{name}");
    }
    // 160 bits: 32 base32 characters.
    assert_eq!(e.printed.secret.len(), 32);
    assert_eq!(e.printed.recovery_codes.len(), 5);
    assert!(e.file_text.contains("type = \"totp\""));
    // Black on white whatever the theme: every drawing line sets both colours first.
    assert!(e.printed.drawing.len() > 10);
    for line in &e.printed.drawing {
        assert!(
            line.starts_with("\x1b[30;47m") && line.ends_with("\x1b[0m"),
            "{line:?}"
        );
    }
}

#[test]
fn png_and_svg_files_decode_to_the_printed_uri() {
    let user = ts_user();
    let workspace = Workspace::new();
    let png = user.home.join("qr.png");
    let svg = user.home.join("qr.svg");
    let out = run_as(
        &user,
        UTF8,
        workspace.binary().to_str().unwrap(),
        &[
            "--no-confirm",
            "--issuer",
            "ACME Corp: Prod",
            "--label",
            "jörg@example.org",
            "--qr-png",
            png.to_str().unwrap(),
            "--qr-svg",
            svg.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let printed = parse_printed(&text(&out.stdout));
    assert!(
        printed
            .uri
            .starts_with("otpauth://totp/ACME%20Corp%3A%20Prod:j%C3%B6rg%40example.org?"),
        "{}",
        printed.uri
    );
    assert_eq!(
        uri_parameter(&printed.uri, "issuer").as_deref(),
        Some("ACME%20Corp%3A%20Prod")
    );
    for image in [&png, &svg] {
        let meta = fs::metadata(image).unwrap();
        assert_eq!(
            meta.mode() & 0o777,
            0o600,
            "{} holds the secret",
            image.display()
        );
        assert_eq!(meta.uid(), user.uid);
    }
    assert_eq!(zbarimg(&png), printed.uri, "PNG");
    let rendered = workspace.path("svg.png");
    rsvg_convert(&svg, &rendered);
    assert_eq!(zbarimg(&rendered), printed.uri, "SVG");
    let file_text = fs::read_to_string(user.otp_path()).unwrap();
    assert_eq!(
        uri_parameter(&zbarimg(&png), "secret").unwrap(),
        file_secret(&file_text)
    );
}

#[test]
fn locale_without_a_character_set_gets_half_blocks_that_fit_and_scan() {
    // LANG unset (after `su - user` on a default Debian) or C: the locale says nothing
    // about the terminal, which almost always takes UTF-8.
    for lang in ["", "C"] {
        let user = ts_user();
        let workspace = Workspace::new();
        let out = run_as(
            &user,
            lang,
            workspace.binary().to_str().unwrap(),
            &["--no-confirm"],
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "LANG={lang:?}: {stderr}");
        let printed = parse_printed(&text(&out.stdout));
        assert!(
            printed.drawing.len() > 10 && printed.drawing.iter().all(|l| !l.contains("##")),
            "LANG={lang:?}: not the half-block drawing: {:#?}",
            printed.drawing
        );
        for line in &printed.drawing {
            assert!(
                visible_columns(line) <= 80,
                "LANG={lang:?}: wider than 80 columns: {line:?}"
            );
        }
        assert_drawing_scans(&printed, &workspace);
        assert!(
            stderr.contains("--qr-png FILE"),
            "LANG={lang:?}: says what to do if the drawing comes out garbled: {stderr}"
        );
    }
}

#[test]
fn non_utf8_locale_gets_an_ascii_drawing_that_still_scans() {
    let user = ts_user();
    let workspace = Workspace::new();
    let out = run_as(
        &user,
        "de_DE.ISO-8859-1",
        workspace.binary().to_str().unwrap(),
        &["--no-confirm"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.is_ascii(), "a Latin-1 locale's output must be ASCII");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("not UTF-8") && stderr.contains("LANG=C.UTF-8"),
        "says how to get the compact drawing: {stderr}"
    );
    let printed = parse_printed(&stdout);
    assert!(printed.drawing.iter().any(|l| l.contains("##")));
    assert_drawing_scans(&printed, &workspace);
    assert_eq!(
        file_secret(&fs::read_to_string(user.otp_path()).unwrap()),
        printed.secret
    );
}

#[test]
fn totp_sha1_6_enrollment_logs_in_and_a_recovery_code_works_once() {
    let e = Enrolled::new(&[]);
    let service = Service::otp(&e.state, "");
    let wrong = e.login(&service, &wrong_totp(&e.printed.secret));
    wrong.assert_failure(AUTH_ERR, "a wrong code");
    wait_for_step_margin(5);
    e.login(&service, &totp(&e.printed.secret))
        .assert_success("oathtool's TOTP code from the printed secret");
    let recovery = &e.printed.recovery_codes[0];
    e.login(&service, recovery)
        .assert_success("a printed recovery code");
    e.login(&service, recovery)
        .assert_failure(AUTH_ERR, "the same recovery code again");
}

#[test]
fn totp_sha512_8_enrollment_logs_in() {
    let e = Enrolled::new(&["--algorithm", "SHA512", "--digits", "8", "--period", "30"]);
    assert_eq!(
        uri_parameter(&e.printed.uri, "algorithm").as_deref(),
        Some("SHA512")
    );
    assert_eq!(
        uri_parameter(&e.printed.uri, "digits").as_deref(),
        Some("8")
    );
    let service = Service::otp(&e.state, "");
    wait_for_step_margin(5);
    let sha1_code = oathtool(&["--totp", "-d", "8", "-b", &e.printed.secret]);
    let code = oathtool(&["--totp=sha512", "-d", "8", "-b", &e.printed.secret]);
    assert_eq!(code.len(), 8);
    if sha1_code != code {
        e.login(&service, &sha1_code)
            .assert_failure(AUTH_ERR, "a SHA1 code for a SHA512 enrollment");
    }
    e.login(&service, &code)
        .assert_success("oathtool --totp=sha512 -d 8 from the printed secret");
}

#[test]
fn hotp_enrollment_logs_in_with_each_counter_once() {
    let e = Enrolled::new(&["--type", "hotp", "--recovery-codes", "0"]);
    assert!(
        e.printed.uri.starts_with("otpauth://hotp/"),
        "{}",
        e.printed.uri
    );
    assert_eq!(
        uri_parameter(&e.printed.uri, "counter").as_deref(),
        Some("0")
    );
    assert_eq!(uri_parameter(&e.printed.uri, "period"), None);
    assert!(e.printed.recovery_codes.is_empty());
    let service = Service::otp(&e.state, "");
    let first = hotp(&e.printed.secret, 0);
    e.login(&service, &first)
        .assert_success("oathtool --hotp -c 0 from the printed secret");
    e.login(&service, &first)
        .assert_failure(AUTH_ERR, "counter 0 again");
    e.login(&service, &hotp(&e.printed.secret, 1))
        .assert_success("counter 1");
}

/// Starts otp-setup for `user` on a pseudo-terminal and waits for its first prompt.
fn interactive(user: &TestUser, workspace: &Workspace, extra: &[&str]) -> OnTerminal {
    let binary = workspace.binary();
    let argv = as_user_argv(user, binary.to_str().unwrap(), extra);
    let terminal = OnTerminal::start(user, UTF8, &argv);
    terminal.wait_for(PROMPT, 1);
    terminal
}

#[test]
fn interactive_three_wrong_codes_write_nothing() {
    let user = ts_user();
    let workspace = Workspace::new();
    let before = listing(&user.home);
    let png = user.home.join("qr.png");
    let mut terminal = interactive(&user, &workspace, &["--qr-png", png.to_str().unwrap()]);
    let secret = parse_printed(&terminal.output()).secret;
    assert!(
        png.exists(),
        "the PNG is there to scan while the prompt waits"
    );
    let wrong = wrong_totp(&secret);
    for attempt in 1..=3 {
        terminal.wait_for(PROMPT, attempt);
        terminal.type_line(&wrong);
    }
    let (status, output) = terminal.finish();
    assert_eq!(status, Some(1), "three wrong codes: exit 1\n{output}");
    assert_eq!(
        output.matches(PROMPT).count(),
        3,
        "asked exactly three times\n{output}"
    );
    assert!(output.contains("nothing was written"), "{output}");
    assert!(
        !user.otp_path().exists(),
        "no ~/.otp.toml after three wrong codes"
    );
    assert_eq!(
        listing(&user.home),
        before,
        "nothing left behind, not even the PNG"
    );
}

#[test]
fn interactive_right_code_writes_the_file() {
    let user = ts_user();
    let workspace = Workspace::new();
    let mut terminal = interactive(&user, &workspace, &[]);
    let printed = parse_printed(&terminal.output());
    terminal.type_line(&wrong_totp(&printed.secret));
    terminal.wait_for(PROMPT, 2);
    assert!(
        !user.otp_path().exists(),
        "nothing written before a right code"
    );
    wait_for_step_margin(3);
    terminal.type_line(&totp(&printed.secret));
    let (status, output) = terminal.finish();
    assert_eq!(status, Some(0), "a right code: exit 0\n{output}");
    assert!(
        output.contains(&format!("Wrote {}.", user.otp_path().display())),
        "{output}"
    );
    let file_text = fs::read_to_string(user.otp_path()).expect("~/.otp.toml written");
    assert_eq!(file_secret(&file_text), printed.secret);
    assert_eq!(fs::metadata(user.otp_path()).unwrap().mode() & 0o777, 0o600);
    assert_eq!(parse_printed(&output).recovery_codes.len(), 5);
}

/// Runs otp-setup with `args` and checks the bad-input contract: exit 2, one line on
/// stderr, nothing on stdout, nothing written or changed in the home directory.
fn assert_refused(user: &TestUser, workspace: &Workspace, args: &[&str], reason: &str) {
    let before = listing(&user.home);
    let enrollment_before = fs::read(user.otp_path()).ok();
    let out = run_as(user, UTF8, workspace.binary().to_str().unwrap(), args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: exit 2\n{stderr}");
    assert_eq!(text(&out.stdout), "", "{args:?}: nothing on stdout");
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?}: one line on stderr: {stderr:?}"
    );
    assert!(stderr.starts_with("otp-setup: "), "{args:?}: {stderr:?}");
    assert!(
        stderr.to_lowercase().contains(&reason.to_lowercase()),
        "{args:?}: expected {reason:?} in {stderr:?}"
    );
    assert_eq!(listing(&user.home), before, "{args:?}: nothing written");
    assert_eq!(
        fs::read(user.otp_path()).ok(),
        enrollment_before,
        "{args:?}: enrollment unchanged"
    );
}

#[test]
fn invalid_flag_values_exit_2_and_write_nothing() {
    let user = ts_user();
    let workspace = Workspace::new();
    let cases: [(&[&str], &str); 14] = [
        (&["--digits", "9"], "--digits"),
        (&["--digits", "six"], "--digits"),
        (&["--type", "sms"], "--type"),
        (&["--algorithm", "MD5"], "--algorithm"),
        (&["--period", "0"], "--period"),
        (&["--period", "99999"], "--period"),
        (&["--recovery-codes", "1000"], "--recovery-codes"),
        (&["--qr", "sixel"], "--qr"),
        (&["--type", "hotp", "--period", "60"], "--period"),
        (
            &["--import-google-authenticator", "--digits", "8"],
            "cannot be used with",
        ),
        (&["--bogus"], "--bogus"),
        (&["--issuer", ""], "--issuer"),
        (&["--label", "tab\there"], "--label"),
        (&["--file", "/root/otp.toml"], "cannot write in /root"),
    ];
    for (args, reason) in cases {
        assert_refused(&user, &workspace, args, reason);
    }
}

#[test]
fn existing_enrollment_is_kept_without_force_and_replaced_with_it() {
    let e = Enrolled::new(&[]);
    let binary = e.workspace.binary();
    assert_refused(&e.user, &e.workspace, &["--no-confirm"], "--force");
    assert_refused(
        &e.user,
        &e.workspace,
        &["--no-confirm", "--type", "hotp"],
        "already exists",
    );
    let out = run_as(
        &e.user,
        UTF8,
        binary.to_str().unwrap(),
        &["--no-confirm", "--force"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let again = parse_printed(&text(&out.stdout));
    assert_ne!(again.secret, e.printed.secret, "a fresh secret");
    let file_text = fs::read_to_string(e.user.otp_path()).unwrap();
    assert_eq!(file_secret(&file_text), again.secret);
    let meta = fs::metadata(e.user.otp_path()).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.uid()), (0o600, e.user.uid));
}

#[test]
fn unwritable_home_exits_2_and_writes_nothing() {
    let user = ts_user();
    let workspace = Workspace::new();
    fs::set_permissions(&user.home, fs::Permissions::from_mode(0o555)).unwrap();
    assert_refused(&user, &workspace, &["--no-confirm"], "cannot write in");
    fs::set_permissions(&user.home, fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn help_names_every_flag_and_version_prints_the_version() {
    let user = ts_user();
    let workspace = Workspace::new();
    let binary = workspace.binary();
    let out = run_as(&user, UTF8, binary.to_str().unwrap(), &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for flag in [
        "--type",
        "--algorithm",
        "--digits",
        "--period",
        "--issuer",
        "--label",
        "--file",
        "--recovery-codes",
        "--qr ",
        "--qr-png",
        "--qr-svg",
        "--no-confirm",
        "--force",
        "--import-google-authenticator",
        "--help",
        "--version",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}\n{help}");
    }
    for line in help.lines() {
        assert!(
            line.chars().count() <= 80,
            "--help line over 80 columns: {line:?}"
        );
    }
    let out = run_as(&user, UTF8, binary.to_str().unwrap(), &["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("otp-setup {}", env!("CARGO_PKG_VERSION"))
    );
    assert!(!user.otp_path().exists());
}

// ---- --import-google-authenticator ----

/// Runs Debian's `google-authenticator` as the user with `flags`; returns the file it wrote.
fn google_authenticator(user: &TestUser, flags: &[&str]) -> String {
    let out = run_as(user, UTF8, "google-authenticator", flags);
    assert_eq!(
        out.status.code(),
        Some(0),
        "google-authenticator {flags:?} failed (install Debian's libpam-google-authenticator)\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    fs::read_to_string(user.home.join(".google_authenticator")).expect("~/.google_authenticator")
}

fn scratch_codes(ga_file: &str) -> Vec<String> {
    ga_file
        .lines()
        .filter(|l| l.len() == 8 && l.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
        .collect()
}

/// `otp-setup --import-google-authenticator --no-confirm` as the user; checks the
/// google-authenticator file is left as it was.
fn import(user: &TestUser, workspace: &Workspace, ga_file: &str) -> String {
    let out = run_as(
        user,
        UTF8,
        workspace.binary().to_str().unwrap(),
        &["--import-google-authenticator", "--no-confirm"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "import failed: {}",
        text(&out.stderr)
    );
    let after = fs::read_to_string(user.home.join(".google_authenticator")).unwrap();
    assert_eq!(
        after, ga_file,
        "the google-authenticator file is left untouched"
    );
    let meta = fs::metadata(user.otp_path()).expect("~/.otp.toml written");
    assert_eq!((meta.mode() & 0o777, meta.uid()), (0o600, user.uid));
    text(&out.stdout)
}

#[test]
fn imported_totp_google_authenticator_file_logs_in_and_a_scratch_code_works_once() {
    let user = ts_user();
    let workspace = Workspace::new();
    let ga_file = google_authenticator(
        &user,
        &[
            "-t", "-d", "-f", "-r", "3", "-R", "30", "-w", "3", "-e", "5", "-q",
        ],
    );
    let secret = ga_file.lines().next().unwrap().to_string();
    let scratch = scratch_codes(&ga_file);
    assert_eq!(scratch.len(), 5);
    let stdout = import(&user, &workspace, &ga_file);
    assert!(stdout.contains("5 scratch codes"), "{stdout}");
    assert!(
        !stdout.contains(&secret),
        "an import does not show the secret unasked"
    );
    let file_text = fs::read_to_string(user.otp_path()).unwrap();
    assert!(file_text.contains("type = \"totp\"") && file_text.contains("period = 30"));
    assert_eq!(file_text.matches("\"sha256:").count(), 5);

    let state = StateDir::new();
    let service = Service::otp(&state, "");
    wait_for_step_margin(5);
    run_pamtester(&service, &user.name, &totp(&secret), None)
        .assert_success("oathtool's code for the google-authenticator secret");
    run_pamtester(&service, &user.name, &scratch[2], None).assert_success("a scratch code");
    run_pamtester(&service, &user.name, &scratch[2], None)
        .assert_failure(AUTH_ERR, "the same scratch code again");
}

#[test]
fn imported_hotp_google_authenticator_file_logs_in() {
    let user = ts_user();
    let workspace = Workspace::new();
    let ga_file = google_authenticator(&user, &["-c", "-f", "-w", "3", "-e", "3", "-u", "-q"]);
    let secret = ga_file.lines().next().unwrap().to_string();
    let counter: u64 = ga_file
        .lines()
        .find_map(|l| l.strip_prefix("\" HOTP_COUNTER "))
        .expect("HOTP_COUNTER line")
        .trim()
        .parse()
        .unwrap();
    import(&user, &workspace, &ga_file);
    let file_text = fs::read_to_string(user.otp_path()).unwrap();
    assert!(file_text.contains("type = \"hotp\""), "{file_text}");
    assert!(
        file_text.contains(&format!("counter = {counter}")),
        "{file_text}"
    );

    let state = StateDir::new();
    let service = Service::otp(&state, "");
    let code = hotp(&secret, counter);
    run_pamtester(&service, &user.name, &code, None)
        .assert_success("oathtool's HOTP code at the file's counter");
    run_pamtester(&service, &user.name, &code, None)
        .assert_failure(AUTH_ERR, "the same HOTP code again");
    run_pamtester(&service, &user.name, &scratch_codes(&ga_file)[0], None)
        .assert_success("a scratch code of an HOTP file");
}

#[test]
fn imported_step_size_is_kept() {
    let user = ts_user();
    let workspace = Workspace::new();
    let ga_file = google_authenticator(
        &user,
        &[
            "-t", "-d", "-f", "-S", "60", "-w", "3", "-u", "-e", "2", "-q",
        ],
    );
    let secret = ga_file.lines().next().unwrap().to_string();
    import(&user, &workspace, &ga_file);
    let file_text = fs::read_to_string(user.otp_path()).unwrap();
    assert!(file_text.contains("period = 60"), "{file_text}");
    let state = StateDir::new();
    let service = Service::otp(&state, "");
    wait_for_step_margin(5);
    run_pamtester(
        &service,
        &user.name,
        &oathtool(&["--totp", "-s", "60", "-b", &secret]),
        None,
    )
    .assert_success("oathtool --totp -s 60");
}

#[test]
fn malformed_google_authenticator_files_exit_2_and_write_nothing() {
    let user = ts_user();
    let workspace = Workspace::new();
    let import_args: &[&str] = &["--import-google-authenticator", "--no-confirm"];
    assert_refused(&user, &workspace, import_args, ".google_authenticator");
    let cases = [
        ("not a secret!\n\" TOTP_AUTH\n", "not valid base32"),
        ("JBSWY3DP\n", "too short"),
        (
            "FEZTIEUO3KVUMTAGT2HIRCMZNU\n\" TOTP_AUTH\nhello\n",
            "line 3",
        ),
        (
            "FEZTIEUO3KVUMTAGT2HIRCMZNU\n\" HOTP_COUNTER x\n",
            "HOTP_COUNTER",
        ),
        (
            "FEZTIEUO3KVUMTAGT2HIRCMZNU\n\" TOTP_AUTH\n\" HOTP_COUNTER 1\n",
            "both",
        ),
        ("", "empty"),
    ];
    for (content, reason) in cases {
        user.write_file(".google_authenticator", content.as_bytes(), 0o400);
        assert_refused(&user, &workspace, import_args, reason);
    }
    assert_refused(
        &user,
        &workspace,
        &["--import-google-authenticator", "no-such-file"],
        "cannot read no-such-file",
    );
}

/// otp-setup(1), as shipped.
fn otp_setup_man_page() -> String {
    std::fs::read_to_string(crate::support::repo_root().join("packaging/man/otp-setup.1"))
        .expect("packaging/man/otp-setup.1")
        .replace("\\-", "-")
}

/// `(low, high)` from otp-setup(1)'s "LOW to HIGH" for an option.
fn documented_range(man: &str, option: &str) -> (u64, u64) {
    let at = man
        .find(&format!(".BI --{option}"))
        .unwrap_or_else(|| panic!("otp-setup(1) does not document --{option}"));
    let paragraph = &man[at..man[at + 1..]
        .find(".TP")
        .map_or(man.len(), |end| at + 1 + end)];
    let number =
        |w: &str| -> Option<u64> { w.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok() };
    let words: Vec<&str> = paragraph.split_whitespace().collect();
    words
        .windows(3)
        .find_map(|w| match (number(w[0]), w[1], number(w[2])) {
            (Some(low), "to", Some(high)) => Some((low, high)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("otp-setup(1) gives no range for --{option}: {paragraph}"))
}

#[test]
fn otp_setup_1_ranges_and_exit_status_are_what_otp_setup_does() {
    let man = otp_setup_man_page();
    let exit_status = &man[man
        .find(".SH EXIT STATUS")
        .expect("otp-setup(1) has EXIT STATUS")..];
    for status in ["0", "1", "2"] {
        assert!(
            exit_status.contains(&format!(".B {status}\n")),
            "otp-setup(1) EXIT STATUS does not explain {status}"
        );
    }
    let user = ts_user();
    let workspace = Workspace::new();
    let binary = workspace.binary();
    let exit = |option: &str, value: u64| -> Option<i32> {
        let value = value.to_string();
        let out = run_as(
            &user,
            "C.UTF-8",
            binary.to_str().unwrap(),
            &[
                "--no-confirm",
                "--qr",
                "none",
                "--force",
                &format!("--{option}"),
                &value,
            ],
        );
        if !matches!(out.status.code(), Some(0 | 2)) {
            panic!(
                "--{option} {value}: {:?}\n{}",
                out.status,
                text(&out.stderr)
            );
        }
        out.status.code()
    };
    for option in ["period", "recovery-codes"] {
        let (low, high) = documented_range(&man, option);
        assert_eq!(exit(option, low), Some(0), "--{option} {low} (documented)");
        assert_eq!(
            exit(option, high),
            Some(0),
            "--{option} {high} (documented)"
        );
        assert_eq!(
            exit(option, high + 1),
            Some(2),
            "--{option} {} (above)",
            high + 1
        );
        if low > 0 {
            assert_eq!(
                exit(option, low - 1),
                Some(2),
                "--{option} {} (below)",
                low - 1
            );
        }
    }
}

/// After `su -` (LANG unset) on an 80x24 terminal, the whole QR code is on screen when the
/// prompt appears: from its first row to the prompt, at most 24 lines, for a short host
/// name and for a long one; the drawing as it stands on that screen scans. On a 20-row
/// terminal a note says how many rows it needs.
#[test]
fn the_qr_code_and_the_prompt_fit_a_24_row_terminal() {
    for (issuer, label) in [
        ("vm", "alice@vm"),
        ("build-server-01", "alice@build-server-01"),
    ] {
        let user = ts_user();
        let workspace = Workspace::new();
        let binary = workspace.binary();
        let argv = as_user_argv(
            &user,
            binary.to_str().unwrap(),
            &["--issuer", issuer, "--label", label],
        );
        let terminal = OnTerminal::start_sized(&user, "", &argv, Some(24));
        let seen = terminal.wait_for(PROMPT, 1);
        let lines: Vec<&str> = seen.lines().map(|l| l.trim_end_matches('\r')).collect();
        let first_row = lines
            .iter()
            .position(|l| l.starts_with('\x1b'))
            .unwrap_or_else(|| panic!("no drawing:\n{seen}"));
        let prompt = lines.iter().position(|l| l.contains(PROMPT)).unwrap();
        assert!(
            prompt - first_row < 24,
            "{issuer}: {} lines from the code's first row to the prompt:\n{seen}",
            prompt - first_row + 1
        );
        assert!(!seen.contains("note: this terminal has"), "{seen}");
        let printed = parse_printed(&seen);
        assert_eq!(printed.drawing.len(), prompt - first_row, "{seen}");
        assert_drawing_scans(&printed, &workspace);
        let (_, rest) = {
            let mut terminal = terminal;
            terminal.type_line("");
            terminal.type_line("");
            terminal.type_line("");
            terminal.finish()
        };
        assert!(rest.contains("nothing was written"), "{rest}");
    }

    let user = ts_user();
    let workspace = Workspace::new();
    let binary = workspace.binary();
    let argv = as_user_argv(&user, binary.to_str().unwrap(), &[]);
    let mut terminal = OnTerminal::start_sized(&user, "", &argv, Some(20));
    let seen = terminal.wait_for(PROMPT, 1);
    assert!(
        seen.contains("note: this terminal has 20 rows and the QR code needs"),
        "{seen}"
    );
    for _ in 0..3 {
        terminal.type_line("");
    }
    terminal.finish();
}
