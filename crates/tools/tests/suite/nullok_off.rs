//! `nullok` can be turned off for one service: `nullok=false` on the module line wins over
//! `nullok = true` in the policy file. The shipped pam-auth-update profile, enabled with the
//! real `pam-auth-update` in a private mount namespace (the system's PAM files are never
//! touched), keeps roll-out's `nullok` for other services but never for sudo: there a user
//! who deletes their own `~/.otp.toml` would need only the password. Run as root.

use crate::support;
use crate::support::clients;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use clients::{policy_text, read_shipped, require_program, ShellUser};
use support::{
    finish, module_path, new_secret, scratch_path, spawn, totp, totp_enrollment,
    wait_for_step_margin, Fixture, Outcome, Service, StateDir, AUTHINFO_UNAVAIL,
};

/// A root-owned 0600 policy file with `nullok = true`, removed on drop.
struct NullokPolicy {
    path: std::path::PathBuf,
}

impl NullokPolicy {
    fn new(state: &StateDir) -> NullokPolicy {
        let path = scratch_path("tno-policy");
        let text = policy_text(&[
            ("state_dir", &format!("\"{}\"", state.path.display())),
            ("nullok", "true"),
        ]);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        NullokPolicy { path }
    }
}

impl Drop for NullokPolicy {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[test]
fn nullok_false_on_the_line_wins_over_the_policy_file() {
    let f = Fixture::unenrolled();
    let policy = NullokPolicy::new(&f.state);
    let line = |args: &str| {
        Service::with_lines(&[
            format!(
                "auth required {} policy={} {args}",
                module_path().display(),
                policy.path.display()
            ),
            "auth required pam_permit.so".into(),
        ])
    };
    // The policy file alone lets the unenrolled user through: nullok is really on.
    f.login(&line(""), "")
        .assert_success("policy file nullok = true");
    for off in ["nullok=false", "nullok=no", "nullok=0"] {
        let out = f.login(&line(off), "");
        out.assert_failure(AUTHINFO_UNAVAIL, off);
        assert!(!out.prompted("Verification code"), "{off}: {out:?}");
    }
    f.login(&line("nullok=true"), "")
        .assert_success("nullok=true on the line");
}

/// Enables the shipped profile (its `pam_otp.so` replaced by the module under test with
/// `policy=`) with pam-auth-update over private copies of /etc/pam.d, /var/lib/pam,
/// /usr/share/pam-configs and debconf's database (tests may run it at the same time),
/// then runs the rest (`login_with_profile`: pamtester for a service) in that namespace.
pub(crate) const WITH_PROFILE_ENABLED: &str = r#"set -e
work=$1; profile=$2; shift 2
cp -a /etc/pam.d "$work/pam.d"; mount --bind "$work/pam.d" /etc/pam.d
mkdir "$work/pam-configs"; cp /usr/share/pam-configs/* "$work/pam-configs/"
cp "$profile" "$work/pam-configs/pam-otp"; mount --bind "$work/pam-configs" /usr/share/pam-configs
mkdir "$work/var-lib-pam"; cp -a /var/lib/pam/. "$work/var-lib-pam/"; mount --bind "$work/var-lib-pam" /var/lib/pam
mkdir "$work/debconf"; cp -a /var/cache/debconf/. "$work/debconf/"; mount --bind "$work/debconf" /var/cache/debconf
DEBIAN_FRONTEND=noninteractive pam-auth-update --enable pam-otp >/dev/null
grep -q pam_succeed_if /etc/pam.d/common-auth
printf 'auth include common-auth\naccount required pam_permit.so\n' > /etc/pam.d/tno-other
exec "$@""#;

fn login_with_profile(service: &str, user: &str, policy: &Path, answers: &str) -> Outcome {
    let work = scratch_path("tno-work");
    fs::create_dir(&work).unwrap();
    let profile = work.join("profile");
    let shipped = read_shipped("pam-configs/pam-otp");
    assert!(shipped.contains("pam_otp.so"), "{shipped}");
    let module = format!("{} policy={}", module_path().display(), policy.display());
    fs::write(&profile, shipped.replace("pam_otp.so", &module)).unwrap();
    let mut argv = support::in_private_mounts(
        WITH_PROFILE_ENABLED,
        &[work.display().to_string(), profile.display().to_string()],
    );
    argv.extend([
        "pamtester".into(),
        service.into(),
        user.into(),
        "authenticate".into(),
    ]);
    let out = finish(spawn(&argv), answers);
    let _ = fs::remove_dir_all(&work);
    out
}

#[test]
fn the_shipped_profile_never_gives_sudo_nullok() {
    require_program("/usr/sbin/pam-auth-update", "libpam-runtime");
    let state = StateDir::new();
    let policy = NullokPolicy::new(&state);
    let unenrolled = ShellUser::new();
    let password = unenrolled.set_password();

    // Roll-out: another service lets the unenrolled user in with the password alone.
    login_with_profile("tno-other", &unenrolled.name, &policy.path, &password)
        .assert_success("unenrolled user, another service, during roll-out");
    // sudo does not, whatever the policy file says.
    let out = login_with_profile("sudo", &unenrolled.name, &policy.path, &password);
    out.assert_failure(AUTHINFO_UNAVAIL, "unenrolled user through sudo's stack");

    // An enrolled user gets through sudo's stack with the password and the code.
    let enrolled = ShellUser::new();
    let password = enrolled.set_password();
    let secret = new_secret();
    enrolled.enroll(&totp_enrollment(&secret));
    wait_for_step_margin(5);
    let answers = format!("{password}\n{}", totp(&secret));
    login_with_profile("sudo", &enrolled.name, &policy.path, &answers)
        .assert_success("enrolled user through sudo's stack");
}
