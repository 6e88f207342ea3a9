//! `otp-setup`: the flow of one enrollment, from the command line to `~/.otp.toml`.
//! `otp-admin enroll` runs the same flow for root, into the administrator's store
//! ([`Operator`] says who types and where the file goes).
//!
//! Everything that can be refused is checked before anything is shown or written:
//! the arguments, an existing enrollment (without `--force`), a directory the user
//! cannot write, a malformed google-authenticator file. Then the secret, URI and QR
//! code are shown, a code from the app is asked for (unless `--no-confirm`), the file
//! is written atomically, and only then are the recovery codes printed, once.
//!
//! Exit codes: 0 enrolled; 1 not confirmed (wrong codes, no answer) or the terminal
//! went away; 2 bad input (each with one line on stderr), nothing written.

mod destination;
pub(crate) mod google_import;
pub(crate) mod qr;
pub(crate) mod renew;
mod window;

use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base32ct::{Base32Unpadded, Encoding as _};
use clap::{Parser, ValueEnum};
use nix::unistd::{access, AccessFlags, Uid, User};
use zeroize::Zeroizing;

pub use self::destination::Operator;
use self::google_import::GoogleAuthenticatorFile;
use self::qr::{TerminalDrawing, MAX_COLUMNS};
use pam_otp_core::answer::as_code;
use pam_otp_core::enrollment::{
    Enrollment, Kind, Secret, MAX_PERIOD, MAX_RECOVERY_CODES, MIN_PERIOD,
};
use pam_otp_core::otp::{totp_step, Algorithm};
use pam_otp_core::otpauth::key_uri;
use pam_otp_core::recovery::RecoveryHash;
use pam_otp_core::window::{matching_counter, Prefer};
use pam_otp_sys::account::Account;
use pam_otp_sys::clock::unix_now;
use pam_otp_sys::private_file::{parent_dir, write_private_file, Existing};

/// 160 bits, as RFC 4226 §4 recommends.
pub const SECRET_BYTES: usize = 20;
pub const DEFAULT_RECOVERY_CODES: u32 = 5;
/// Tries at the confirmation prompt before giving up.
pub const CONFIRM_TRIES: u32 = 3;
/// TOTP steps either side of now accepted when confirming: the module's default window,
/// so that a phone whose clock is too far off is caught now rather than at login.
const CONFIRM_WINDOW: u64 = 1;
/// HOTP counters ahead accepted when confirming (the module's default look-ahead).
const CONFIRM_HOTP_LOOKAHEAD: u64 = 10;
/// Longest issuer or label accepted (keeps the QR code small enough to scan).
const MAX_NAME_CHARS: usize = 100;
/// A google-authenticator file is a few hundred bytes; refuse to read anything huge.
const MAX_IMPORT_BYTES: u64 = 64 * 1024;
/// Characters per recovery code (base32, 5 bits each: 60 bits), shown in groups of 4.
const RECOVERY_CODE_CHARS: usize = 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CodeType {
    Totp,
    Hotp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum AlgorithmArg {
    #[value(name = "SHA1")]
    Sha1,
    #[value(name = "SHA256")]
    Sha256,
    #[value(name = "SHA512")]
    Sha512,
}

impl From<AlgorithmArg> for Algorithm {
    fn from(arg: AlgorithmArg) -> Algorithm {
        match arg {
            AlgorithmArg::Sha1 => Algorithm::Sha1,
            AlgorithmArg::Sha256 => Algorithm::Sha256,
            AlgorithmArg::Sha512 => Algorithm::Sha512,
        }
    }
}

/// How the QR code is drawn in the terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum QrArg {
    /// UTF-8 half blocks, two modules per character
    Utf8,
    /// ASCII with ANSI colours, two characters per module
    Ansi,
    /// no terminal drawing
    None,
}

// The help text is wrapped by hand (no line over 80 columns) rather than by clap's
// `wrap_help`, which would bring in a terminal-size crate.
/// The command line of `otp-setup`.
#[derive(Parser, Debug)]
#[command(
    name = "otp-setup",
    version,
    long_about = None,
    about = "Enroll for one-time codes: make a secret, show it as a QR code for your\n\
             authenticator app, check a code from the app, write ~/.otp.toml for pam_otp.",
    after_help = "Exit status: 0 enrolled; 1 not confirmed; 2 bad input.\n\
                  Nothing is written unless the status is 0."
)]
pub struct Args {
    #[command(flatten)]
    pub choices: Choices,
    /// Import ~/.google_authenticator (or FILE): secret, TOTP or HOTP,
    /// step size; its scratch codes become recovery codes. FILE is kept.
    #[arg(long = "import-google-authenticator", value_name = "FILE", num_args = 0..=1,
          verbatim_doc_comment,
          conflicts_with_all = ["kind", "algorithm", "digits", "period", "recovery_codes",
                                "show", "new_recovery_codes"])]
    pub import_google_authenticator: Option<Option<PathBuf>>,
}

/// The choices of an enrollment, the same in `otp-setup` and `otp-admin enroll`.
#[derive(clap::Args, Debug)]
pub struct Choices {
    /// Time-based or counter-based codes [default: totp]
    #[arg(
        long = "type",
        value_enum,
        value_name = "totp|hotp",
        hide_possible_values = true
    )]
    pub kind: Option<CodeType>,
    /// HMAC hash; most apps know only SHA1 [default: SHA1]
    #[arg(
        long,
        value_enum,
        ignore_case = true,
        value_name = "SHA1|SHA256|SHA512",
        hide_possible_values = true
    )]
    pub algorithm: Option<AlgorithmArg>,
    /// Digits per code [default: 6]
    #[arg(long, value_name = "6|7|8", value_parser = clap::value_parser!(u32).range(6..=8))]
    pub digits: Option<u32>,
    /// TOTP: seconds each code lasts, 5 to 3600 [default: 30]
    #[arg(long, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(MIN_PERIOD..=MAX_PERIOD))]
    pub period: Option<u64>,
    /// Provider name shown in the app [default: the host name]
    #[arg(long, value_name = "NAME")]
    pub issuer: Option<String>,
    /// Account name shown in the app [default: USER@HOST]
    #[arg(long, value_name = "NAME")]
    pub label: Option<String>,
    /// File to write [default: ~/.otp.toml, home from the user database]
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// One-time recovery codes to make, 0 to 100 [default: 5]
    #[arg(long = "recovery-codes", value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=MAX_RECOVERY_CODES as i64))]
    pub recovery_codes: Option<u32>,
    /// QR code in the terminal: utf8 (half blocks), ansi (ASCII with
    /// colours, twice as wide) or none [default: utf8; ansi if the
    /// locale is not UTF-8]
    #[arg(
        long,
        value_enum,
        value_name = "utf8|ansi|none",
        hide_possible_values = true,
        verbatim_doc_comment
    )]
    pub qr: Option<QrArg>,
    /// Also write the QR code as a PNG (mode 0600: it holds the secret)
    #[arg(long = "qr-png", value_name = "FILE")]
    pub qr_png: Option<PathBuf>,
    /// Also write the QR code as an SVG (mode 0600: it holds the secret)
    #[arg(long = "qr-svg", value_name = "FILE")]
    pub qr_svg: Option<PathBuf>,
    /// Write without first asking for a code from the app
    #[arg(long)]
    pub no_confirm: bool,
    /// Replace an existing enrollment file (and image files)
    #[arg(long)]
    pub force: bool,
    /// Show the enrollment's QR code again, after a code from the app
    #[arg(long, conflicts_with_all = RENEW_CONFLICTS)]
    pub show: bool,
    /// Replace the recovery codes, after a code from the app [default: 5]
    #[arg(long = "new-recovery-codes", value_name = "N", num_args = 0..=1,
          default_missing_value = "5",
          value_parser = clap::value_parser!(u32).range(1..=MAX_RECOVERY_CODES as i64),
          conflicts_with_all = RENEW_CONFLICTS, conflicts_with = "show")]
    pub new_recovery_codes: Option<u32>,
}

/// What --show and --new-recovery-codes cannot be combined with: they keep the
/// enrollment's secret and kind, and always ask for a code first.
const RENEW_CONFLICTS: [&str; 9] = [
    "kind",
    "algorithm",
    "digits",
    "period",
    "recovery_codes",
    "qr_png",
    "qr_svg",
    "no_confirm",
    "force",
];

/// What the flow needs from outside the arguments.
pub struct Context {
    /// The account being enrolled.
    pub user_name: String,
    pub home: PathBuf,
    pub host_name: String,
    /// From LC_ALL, LC_CTYPE, LANG (the first that is set and not empty).
    pub locale_charset: LocaleCharset,
    /// Rows of the terminal on standard output, if it is one.
    pub terminal_rows: Option<u16>,
    /// Who types at this terminal, and so where the file goes and how it is written.
    pub operator: Operator,
}

impl Context {
    /// The invoking user (real uid) from the user database, the host name, the locale.
    pub fn from_system() -> Result<Context, SetupError> {
        let uid = Uid::current();
        let user = User::from_uid(uid)
            .map_err(|e| SetupError::BadInput(format!("cannot look up user id {uid}: {e}")))?
            .ok_or_else(|| {
                SetupError::BadInput(format!("user id {uid} has no entry in the user database"))
            })?;
        Ok(Context {
            user_name: user.name,
            home: user.dir,
            host_name: host_name(),
            locale_charset: locale_charset(|name| std::env::var_os(name)),
            terminal_rows: window::terminal_rows(),
            operator: Operator::User,
        })
    }

    /// Root enrolling `account` (`otp-admin enroll`); the locale from the environment.
    pub fn administrator_for(account: Account) -> Context {
        Context {
            user_name: account.name.clone(),
            home: account.home.clone(),
            host_name: host_name(),
            locale_charset: locale_charset(|name| std::env::var_os(name)),
            terminal_rows: window::terminal_rows(),
            operator: Operator::Administrator(account),
        }
    }
}

/// The kernel's host name (what `hostname` prints), or `localhost` if it cannot be read.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// What the locale says about the terminal's character set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocaleCharset {
    Utf8,
    /// Unset, `C` or `POSIX`: says nothing about the terminal. That is the locale after
    /// `su - user` on a default Debian (an empty /etc/default/locale), or in a minimal
    /// container, while the terminal at the other end almost always takes UTF-8.
    Unspecified,
    /// A named character set that is not UTF-8 (`de_DE.ISO-8859-1`, `ja_JP.eucJP`).
    Other,
}

/// The character set of the locale as setlocale(LC_CTYPE, "") would see it: LC_ALL wins
/// over LC_CTYPE, which wins over LANG.
pub fn locale_charset(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> LocaleCharset {
    let Some(value) = ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .filter_map(|name| var(name))
        .find(|value| !value.is_empty())
    else {
        return LocaleCharset::Unspecified;
    };
    let value = value.to_string_lossy().to_ascii_uppercase();
    if value.contains("UTF-8") || value.contains("UTF8") {
        LocaleCharset::Utf8
    } else if value == "C" || value == "POSIX" {
        LocaleCharset::Unspecified
    } else {
        LocaleCharset::Other
    }
}

/// Why `otp-setup` stopped; each is one line for the user.
#[derive(Debug)]
pub enum SetupError {
    /// Bad arguments or files, or nowhere to write: exit code 2, nothing written.
    BadInput(String),
    /// No right code from the app, or the terminal went away: exit code 1, nothing written.
    NotConfirmed(String),
}

impl SetupError {
    pub fn exit_code(&self) -> u8 {
        match self {
            SetupError::BadInput(_) => 2,
            SetupError::NotConfirmed(_) => 1,
        }
    }
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::BadInput(message) | SetupError::NotConfirmed(message) => {
                f.write_str(message)
            }
        }
    }
}

impl std::error::Error for SetupError {}

fn bad(message: impl Into<String>) -> SetupError {
    SetupError::BadInput(message.into())
}

/// The terminal went away while we were talking to it.
fn lost_terminal(e: io::Error) -> SetupError {
    SetupError::NotConfirmed(format!(
        "cannot write to the terminal: {e}; nothing was written"
    ))
}

/// Entry point of the `otp-setup` binary.
pub fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            if !e.use_stderr() {
                // --help and --version: print and succeed.
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            eprintln!("otp-setup: {}", first_line_of_clap_error(&e));
            return ExitCode::from(2);
        }
    };
    let result = Context::from_system().and_then(|context| {
        let stdin = io::stdin();
        run_otp_setup(
            &args,
            &context,
            &mut stdin.lock(),
            &mut io::stdout().lock(),
            &mut io::stderr().lock(),
        )
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otp-setup: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// clap's first line, e.g. "invalid value 'x' for '--digits <6|7|8>': …", plus the hint.
fn first_line_of_clap_error(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let line = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments");
    let line = line.strip_prefix("error: ").unwrap_or(line);
    format!("{line} (see otp-setup --help)")
}

/// What will be written where, all decided before anything is shown.
struct Plan {
    target: PathBuf,
    existing: Existing,
    enrollment: Enrollment,
    /// Recovery codes to show once the file is written (none when imported).
    new_recovery_codes: Vec<Zeroizing<String>>,
    imported: Option<(PathBuf, GoogleAuthenticatorFile)>,
    issuer: String,
    label: String,
    terminal_drawing: Option<TerminalDrawing>,
    /// The ASCII drawing was chosen because the locale is not UTF-8 (not by `--qr`).
    ascii_for_locale: bool,
    /// Half blocks were chosen although the locale does not say the terminal takes UTF-8.
    utf8_assumed: bool,
}

/// The whole flow of `otp-setup`; see the module comment.
pub fn run_otp_setup(
    args: &Args,
    context: &Context,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), SetupError> {
    if args.choices.show || args.choices.new_recovery_codes.is_some() {
        return renew::renew(&args.choices, context, input, out, err).map(|_| ());
    }
    let import_from = args.import_google_authenticator.as_ref().map(|source| {
        source
            .clone()
            .unwrap_or_else(|| in_home(context, ".google_authenticator"))
    });
    enroll(&args.choices, import_from, context, input, out, err).map(|_| ())
}

/// One enrollment, for whichever tool: see the module comment. `import_from` is a
/// google-authenticator file to take the secret from instead of making one. Returns the
/// file written.
pub fn enroll(
    args: &Choices,
    import_from: Option<PathBuf>,
    context: &Context,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<PathBuf, SetupError> {
    let plan = plan(args, import_from, context)?;
    let uri = key_uri(&plan.enrollment, &plan.issuer, &plan.label);
    let code = qr_of(&uri)?;

    // Image files first: they may still be refused, and nothing has been shown yet.
    let mut images_written: Vec<PathBuf> = Vec::new();
    type Render = fn(&qrcode::QrCode) -> Result<Vec<u8>, String>;
    let images: [(&Option<PathBuf>, Render); 2] = [
        (&args.qr_png, |code| {
            qr::png(code).map_err(|e| format!("cannot make the PNG image: {e}"))
        }),
        (&args.qr_svg, |code| Ok(qr::svg(code).into_bytes())),
    ];
    for (path, render) in images {
        let Some(path) = path else { continue };
        // The image holds the secret, as the URI does.
        let bytes = Zeroizing::new(render(&code).map_err(bad)?);
        if let Err(e) = write_private_file(path, &bytes, plan.existing) {
            remove_all(&images_written);
            return Err(bad(e.to_string()));
        }
        images_written.push(path.clone());
    }

    let shown = show(&plan, context, &uri, &code, out, err).and_then(|()| out.flush());
    let confirmed = match shown {
        Err(e) => Err(lost_terminal(e)),
        Ok(()) if args.no_confirm => Ok(plan.enrollment.clone()),
        Ok(()) => confirm(&plan.enrollment, &context.operator.whose(), input, err),
    };
    let enrollment = match confirmed {
        Ok(enrollment) => enrollment,
        Err(e) => {
            // Nothing of an enrollment that never happened stays on disk.
            remove_all(&images_written);
            return Err(e);
        }
    };

    context
        .operator
        .write(&plan.target, enrollment.to_toml().as_bytes(), plan.existing)
        .inspect_err(|_| remove_all(&images_written))?;
    report_written(&plan, context, &images_written, out).map_err(|e| {
        // The file is written; the codes could not be shown. Say so rather than pretend.
        SetupError::NotConfirmed(format!(
            "wrote {} but could not show the recovery codes ({e}); run {} --force again",
            plan.target.display(),
            context.operator.command(&context.user_name)
        ))
    })?;
    Ok(plan.target)
}

fn remove_all(paths: &[PathBuf]) {
    for path in paths {
        let _ = std::fs::remove_file(path);
    }
}

fn check_name(what: &str, value: &str) -> Result<(), SetupError> {
    if value.trim().is_empty() {
        return Err(bad(format!("{what} must not be empty")));
    }
    if value.chars().any(char::is_control) {
        return Err(bad(format!("{what} must not contain control characters")));
    }
    if value.chars().count() > MAX_NAME_CHARS {
        return Err(bad(format!(
            "{what} is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    Ok(())
}

/// The QR code's issuer and label: `--issuer` and `--label`, else the operator's
/// defaults; checked.
fn issuer_and_label(args: &Choices, context: &Context) -> Result<(String, String), SetupError> {
    let issuer = args
        .issuer
        .clone()
        .unwrap_or_else(|| context.operator.default_issuer(&context.host_name));
    let label = args
        .label
        .clone()
        .unwrap_or_else(|| format!("{}@{}", context.user_name, context.host_name));
    check_name("--issuer", &issuer)?;
    check_name("--label", &label)?;
    Ok((issuer, label))
}

/// The enrollment file: `--file`, else the operator's default.
fn target_file(args: &Choices, context: &Context) -> Result<PathBuf, SetupError> {
    match &args.file {
        Some(file) => Ok(file.clone()),
        None => context.operator.default_file(context),
    }
}

/// The QR code of a key URI.
fn qr_of(uri: &str) -> Result<qrcode::QrCode, SetupError> {
    qr::encode(uri.as_bytes()).map_err(|e| {
        bad(format!(
            "the key URI does not fit in a QR code ({e}); use a shorter --issuer or --label"
        ))
    })
}

/// `count` new recovery codes, to show once, and their hashes, to write.
fn fresh_recovery_codes(
    count: u32,
) -> Result<(Vec<Zeroizing<String>>, Vec<RecoveryHash>), SetupError> {
    let codes = (0..count)
        .map(|_| new_recovery_code())
        .collect::<Result<Vec<_>, _>>()?;
    let hashes = codes
        .iter()
        .map(|code| Ok(RecoveryHash::new(code, random_array()?)))
        .collect::<Result<Vec<_>, SetupError>>()?;
    Ok((codes, hashes))
}

/// `~/NAME` of the user (home from the user database).
fn in_home(context: &Context, name: &str) -> PathBuf {
    context.home.join(name)
}

fn plan(
    args: &Choices,
    import_from: Option<PathBuf>,
    context: &Context,
) -> Result<Plan, SetupError> {
    if args.period.is_some() && args.kind == Some(CodeType::Hotp) {
        return Err(bad(
            "--period is for time-based codes; it cannot be used with --type hotp",
        ));
    }
    let (issuer, label) = issuer_and_label(args, context)?;
    let target = target_file(args, context)?;
    let existing = if args.force {
        Existing::Replace
    } else {
        Existing::Keep
    };
    context.operator.check_target(&target, existing)?;
    for path in args.qr_png.iter().chain(args.qr_svg.iter()) {
        check_writable(path, existing)?;
    }

    let (enrollment, new_recovery_codes, imported) = match import_from {
        Some(source) => {
            let file = read_google_authenticator(&source)?;
            let recovery_codes = file
                .scratch_codes
                .iter()
                .map(|code| Ok(RecoveryHash::new(code, random_array()?)))
                .collect::<Result<Vec<_>, SetupError>>()?;
            let enrollment = Enrollment {
                kind: file.kind,
                algorithm: Algorithm::Sha1,
                digits: 6,
                secret: file.secret.clone(),
                recovery_codes,
            };
            (enrollment, Vec::new(), Some((source, file)))
        }
        None => {
            let kind = match args.kind.unwrap_or(CodeType::Totp) {
                CodeType::Totp => Kind::Totp {
                    period: args.period.unwrap_or(30),
                },
                CodeType::Hotp => Kind::Hotp { counter: 0 },
            };
            let mut secret = Zeroizing::new(vec![0u8; SECRET_BYTES]);
            fill_random(&mut secret)?;
            let (codes, hashes) =
                fresh_recovery_codes(args.recovery_codes.unwrap_or(DEFAULT_RECOVERY_CODES))?;
            let enrollment = Enrollment {
                kind,
                algorithm: args.algorithm.map(Algorithm::from).unwrap_or_default(),
                digits: args.digits.unwrap_or(6),
                secret: Secret::new(secret.to_vec()),
                recovery_codes: hashes,
            };
            (enrollment, codes, None)
        }
    };

    let drawing = Drawing::chosen(args, context, imported.is_some());
    Ok(Plan {
        target,
        existing,
        enrollment,
        new_recovery_codes,
        imported,
        issuer,
        label,
        terminal_drawing: drawing.terminal_drawing,
        ascii_for_locale: drawing.ascii_for_locale,
        utf8_assumed: drawing.utf8_assumed,
    })
}

/// How the QR code is drawn in the terminal, and why.
struct Drawing {
    terminal_drawing: Option<TerminalDrawing>,
    ascii_for_locale: bool,
    utf8_assumed: bool,
}

impl Drawing {
    fn chosen(args: &Choices, context: &Context, imported: bool) -> Drawing {
        // When importing, the phone already has the secret: show it only if asked to.
        let wanted_drawing = match (args.qr, imported) {
            (Some(QrArg::None), _) | (None, true) => None,
            (Some(QrArg::Utf8), _) => Some(TerminalDrawing::HalfBlocks),
            (Some(QrArg::Ansi), _) => Some(TerminalDrawing::AsciiAnsi),
            (None, false) if context.locale_charset == LocaleCharset::Other => {
                Some(TerminalDrawing::AsciiAnsi)
            }
            (None, false) => Some(TerminalDrawing::HalfBlocks),
        };
        Drawing {
            terminal_drawing: wanted_drawing,
            ascii_for_locale: args.qr.is_none()
                && wanted_drawing == Some(TerminalDrawing::AsciiAnsi),
            utf8_assumed: args.qr.is_none()
                && context.locale_charset == LocaleCharset::Unspecified
                && wanted_drawing == Some(TerminalDrawing::HalfBlocks),
        }
    }
}

/// Refuses an existing file (without `--force`) or a directory the user cannot write.
fn check_writable(path: &Path, existing: Existing) -> Result<(), SetupError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(bad(format!("{} is a directory", path.display())));
        }
        Ok(_) if existing == Existing::Keep => {
            return Err(bad(format!(
                "{} already exists; use --force to replace it",
                path.display()
            )));
        }
        _ => {}
    }
    let dir = parent_dir(path);
    access(dir, AccessFlags::W_OK | AccessFlags::X_OK)
        .map_err(|e| bad(format!("cannot write in {}: {}", dir.display(), e.desc())))
}

fn read_google_authenticator(path: &Path) -> Result<GoogleAuthenticatorFile, SetupError> {
    let mut text = Zeroizing::new(String::new());
    File::open(path)
        .and_then(|f| f.take(MAX_IMPORT_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    if text.len() as u64 > MAX_IMPORT_BYTES {
        return Err(bad(format!(
            "{} is not a google-authenticator file: larger than {MAX_IMPORT_BYTES} bytes",
            path.display()
        )));
    }
    google_import::parse(&text).map_err(|e| {
        bad(format!(
            "{} is not a usable google-authenticator file: {e}",
            path.display()
        ))
    })
}

fn fill_random(buf: &mut [u8]) -> Result<(), SetupError> {
    getrandom::fill(buf).map_err(|e| bad(format!("the OS random source failed: {e}")))
}

fn random_array<const N: usize>() -> Result<[u8; N], SetupError> {
    let mut bytes = [0u8; N];
    fill_random(&mut bytes)?;
    Ok(bytes)
}

/// A recovery code such as `k3tq-zm7a-p2xe`: 60 random bits in lowercase base32
/// (no 0, 1 or 8 to mistake for O, l or B), in groups of four.
fn new_recovery_code() -> Result<Zeroizing<String>, SetupError> {
    let bytes = Zeroizing::new(random_array::<8>()?);
    let encoded = Zeroizing::new(Base32Unpadded::encode_string(&bytes[..]));
    let chars = &encoded[..RECOVERY_CODE_CHARS];
    Ok(Zeroizing::new(format!(
        "{}-{}-{}",
        &chars[0..4],
        &chars[4..8],
        &chars[8..12]
    )))
}

/// The secret in groups of four, for typing by hand.
fn grouped(secret: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(secret.len() * 5 / 4));
    for (i, c) in secret.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn describe_kind(enrollment: &Enrollment) -> String {
    let moving = match enrollment.kind {
        Kind::Totp { period } => format!("time-based (TOTP), a new code every {period} seconds"),
        Kind::Hotp { counter } => format!("counter-based (HOTP), counter starting at {counter}"),
    };
    format!(
        "{moving}, {}, {} digits",
        enrollment.algorithm.name(),
        enrollment.digits
    )
}

fn show(
    plan: &Plan,
    context: &Context,
    uri: &str,
    code: &qrcode::QrCode,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<()> {
    if let Some((source, file)) = &plan.imported {
        writeln!(
            out,
            "Importing {}: {}; {} scratch codes become recovery codes.",
            source.display(),
            describe_kind(&plan.enrollment),
            file.scratch_codes.len()
        )?;
        if !file.dropped_options.is_empty() {
            writeln!(
                out,
                "Not imported (window, rate limit and reuse are the administrator's policy): {}.",
                file.dropped_options.join(", ")
            )?;
        }
        if plan.terminal_drawing.is_none() {
            return Ok(());
        }
    }
    // The details come first and the drawing last, so that the prompt follows the code's
    // last row: on a 24-row terminal the whole code is on screen while it is asked for.
    let secret = plan.enrollment.secret.to_base32();
    writeln!(out, "Add the account by hand:")?;
    writeln!(out, "  Issuer:  {}", plan.issuer)?;
    writeln!(out, "  Account: {}", plan.label)?;
    writeln!(out, "  Secret:  {}", grouped(&secret).as_str())?;
    writeln!(out, "  Type:    {}", describe_kind(&plan.enrollment))?;
    writeln!(out, "Key URI: {uri}")?;
    if let Some(note) = context.operator.entry_note(&plan.issuer, &plan.label) {
        writeln!(out, "{note}")?;
    }
    let Some(drawing) = plan.terminal_drawing else {
        writeln!(out)?;
        return Ok(());
    };
    let columns = drawing.columns(code);
    // The drawing and the prompt below it.
    let rows_needed = drawing.rows(code) + 1;
    if plan.ascii_for_locale {
        writeln!(
            err,
            "note: the locale is not UTF-8, so the QR code is drawn in ASCII ({columns} columns); for a compact one run LANG=C.UTF-8 {}, or use --qr-png FILE",
            context.operator.command(&context.user_name)
        )?;
    } else if plan.utf8_assumed {
        writeln!(
            err,
            "note: the locale does not name a character set, so the QR code is drawn with UTF-8 half blocks, which almost every terminal shows; if it looks garbled, use --qr-png FILE (or --qr ansi, twice as wide)"
        )?;
    }
    if columns > MAX_COLUMNS && !plan.ascii_for_locale {
        writeln!(
            err,
            "note: the QR code is {columns} columns wide; widen the terminal, shorten --issuer/--label, or use --qr-png FILE"
        )?;
    }
    if let Some(rows) = context
        .terminal_rows
        .filter(|&rows| usize::from(rows) < rows_needed)
    {
        writeln!(
            err,
            "note: this terminal has {rows} rows and the QR code needs {rows_needed} to stay whole above the prompt; make the window taller (or the font smaller) and run it again, scroll back to scan it, or use --qr-png FILE"
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "Or scan this QR code with {} authenticator app:",
        context.operator.whose()
    )?;
    out.write_all(Zeroizing::new(drawing.draw(code)).as_bytes())?;
    Ok(())
}

/// Asks for a code until one is right (at most [`CONFIRM_TRIES`] times).
/// Returns the enrollment to write: for HOTP with the counter moved past the code
/// just typed, so that code cannot be used again and the app's next one is expected.
fn confirm(
    enrollment: &Enrollment,
    whose: &str,
    input: &mut dyn BufRead,
    err: &mut dyn Write,
) -> Result<Enrollment, SetupError> {
    for attempt in 1..=CONFIRM_TRIES {
        write!(err, "Enter the code {whose} app shows now: ").map_err(lost_terminal)?;
        err.flush().map_err(lost_terminal)?;
        let mut line = Zeroizing::new(String::new());
        let read = input.read_line(&mut line).map_err(|e| {
            SetupError::NotConfirmed(format!("cannot read the code: {e}; nothing was written"))
        })?;
        if read == 0 {
            let _ = writeln!(err);
            return Err(SetupError::NotConfirmed(
                "no code was entered; nothing was written".into(),
            ));
        }
        if let Some(confirmed) = check_code(enrollment, &line, unix_now()) {
            return Ok(confirmed);
        }
        let left = CONFIRM_TRIES - attempt;
        if left > 0 {
            let hint = match enrollment.kind {
                Kind::Totp { .. } => " (is the phone's clock right?)",
                Kind::Hotp { .. } => "",
            };
            writeln!(
                err,
                "That code is not right{hint}; {left} more {}.",
                if left == 1 { "try" } else { "tries" }
            )
            .map_err(lost_terminal)?;
        }
    }
    Err(SetupError::NotConfirmed(format!(
        "{CONFIRM_TRIES} wrong codes; nothing was written"
    )))
}

/// The enrollment to write if `answer` is a right code at `unix_time`.
fn check_code(enrollment: &Enrollment, answer: &str, unix_time: u64) -> Option<Enrollment> {
    let given = as_code(answer, enrollment.digits)?;
    match enrollment.kind {
        Kind::Totp { period } => {
            let step = totp_step(unix_time, period);
            let steps = step.saturating_sub(CONFIRM_WINDOW)..=step.saturating_add(CONFIRM_WINDOW);
            matching_counter(&enrollment.hotp_key(), given, steps, Prefer::Newest)
                .map(|_| enrollment.clone())
        }
        Kind::Hotp { counter } => {
            let counters = counter..=counter.saturating_add(CONFIRM_HOTP_LOOKAHEAD);
            let matched =
                matching_counter(&enrollment.hotp_key(), given, counters, Prefer::Oldest)?;
            let mut next = enrollment.clone();
            next.kind = Kind::Hotp {
                counter: matched + 1,
            };
            Some(next)
        }
    }
}

fn report_written(
    plan: &Plan,
    context: &Context,
    images: &[PathBuf],
    out: &mut dyn Write,
) -> io::Result<()> {
    writeln!(out, "Wrote {}.", plan.target.display())?;
    for image in images {
        writeln!(
            out,
            "Wrote {} (it holds the secret: delete it once the code is scanned).",
            image.display()
        )?;
    }
    if let Some((source, file)) = &plan.imported {
        writeln!(
            out,
            "Your {} unused scratch codes from {} are now recovery codes; each works once.",
            file.scratch_codes.len(),
            source.display()
        )?;
        writeln!(out, "{} was left as it is.", source.display())?;
    } else if !plan.new_recovery_codes.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "Recovery codes: each works once in place of a code. {}",
            context.operator.keep_codes_safe(&context.user_name)
        )?;
        writeln!(
            out,
            "they are stored only as hashes and will not be shown again."
        )?;
        for code in &plan.new_recovery_codes {
            writeln!(out, "  {}", code.as_str())?;
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enrollment(kind: Kind) -> Enrollment {
        Enrollment {
            kind,
            algorithm: Algorithm::Sha1,
            digits: 6,
            secret: Secret::new(b"12345678901234567890".to_vec()),
            recovery_codes: Vec::new(),
        }
    }

    #[test]
    fn locale_follows_lc_all_then_lc_ctype_then_lang() {
        let env = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        use LocaleCharset::{Other, Unspecified, Utf8};
        let cases: [(&[(&str, &str)], LocaleCharset); 10] = [
            (&[("LANG", "en_US.UTF-8")], Utf8),
            (&[("LANG", "C.utf8")], Utf8),
            (&[("LANG", "C")], Unspecified),
            (&[("LANG", "POSIX")], Unspecified),
            (&[], Unspecified),
            (&[("LANG", "")], Unspecified),
            (&[("LC_ALL", "C"), ("LANG", "en_US.UTF-8")], Unspecified),
            (
                &[("LC_ALL", ""), ("LC_CTYPE", "de_DE.UTF-8"), ("LANG", "C")],
                Utf8,
            ),
            (
                &[("LC_CTYPE", "POSIX"), ("LANG", "en_US.UTF-8")],
                Unspecified,
            ),
            (&[("LANG", "de_DE.ISO-8859-1")], Other),
        ];
        for (vars, expected) in cases {
            assert_eq!(locale_charset(env(vars)), expected, "{vars:?}");
        }
    }

    #[test]
    fn totp_confirmation_accepts_one_step_either_side_only() {
        let e = enrollment(Kind::Totp { period: 30 });
        let t = 1_111_111_111;
        // Codes for steps 37037035..=37037039 (t-60 .. t+60) of the RFC 6238 SHA-1 seed,
        // from `oathtool --totp -w 4 --now=@1111111050 3132...3930` (RFC 6238 Appendix B
        // has the middle rows: 07081804, 14050471).
        for (code, accepted) in [
            ("731029", false),
            ("081804", true),
            ("050471", true),
            ("266759", true),
            ("306183", false),
        ] {
            let answer = format!(" {code}\n");
            assert_eq!(
                check_code(&e, &answer, t as u64).is_some(),
                accepted,
                "code {code}"
            );
        }
        assert!(check_code(&e, "abcdef", t as u64).is_none());
    }

    #[test]
    fn hotp_confirmation_moves_the_counter_past_the_code() {
        let e = enrollment(Kind::Hotp { counter: 0 });
        // RFC 4226 Appendix D: counter 3 gives 969429.
        let written = check_code(&e, "969429", 0).unwrap();
        assert_eq!(written.kind, Kind::Hotp { counter: 4 });
        assert!(check_code(&e, "000000", 0).is_none());
    }

    #[test]
    fn recovery_codes_are_random_grouped_and_normalise_to_12_chars() {
        let a = new_recovery_code().unwrap();
        let b = new_recovery_code().unwrap();
        assert_ne!(*a, *b);
        assert_eq!(a.len(), 14);
        assert_eq!(
            pam_otp_core::recovery::normalise(&a).len(),
            RECOVERY_CODE_CHARS
        );
        assert!(a
            .chars()
            .all(|c| c == '-' || c.is_ascii_lowercase() || ('2'..='7').contains(&c)));
    }

    #[test]
    fn secrets_are_grouped_by_four() {
        assert_eq!(grouped("ABCDEFGHIJ").as_str(), "ABCD EFGH IJ");
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
