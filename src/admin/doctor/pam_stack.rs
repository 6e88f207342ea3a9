//! A PAM service's auth stack as libpam builds it: the lines of its file, with
//! `@include`, `include` and `substack` followed. Pure: files come from a loader.

/// How a rule's result steers the stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    Required,
    Requisite,
    Sufficient,
    Optional,
    /// `[value=action ...]`, lower-cased, in file order.
    Bracket(Vec<(String, String)>),
}

impl Control {
    /// The action for `value` in a bracket control (falling back to `default`).
    fn action(actions: &[(String, String)], value: &str) -> Option<String> {
        let find = |key: &str| {
            actions
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, action)| action.clone())
        };
        find(value).or_else(|| find("default"))
    }

    /// What happens when the module succeeds: `done` ends the stack (with success if
    /// nothing required failed before), a number jumps over that many rules.
    pub fn on_success(&self) -> Option<String> {
        match self {
            Control::Sufficient => Some("done".into()),
            Control::Bracket(actions) => Control::action(actions, "success"),
            _ => None,
        }
    }

    /// Whether a failure of the module fails the stack (`required`, `requisite`,
    /// or a bracket control whose failures are `bad` or `die`).
    pub fn failure_counts(&self) -> bool {
        match self {
            Control::Required | Control::Requisite => true,
            Control::Sufficient | Control::Optional => false,
            Control::Bracket(actions) => {
                ["auth_err", "authinfo_unavail", "maxtries"]
                    .iter()
                    .all(|value| {
                        matches!(
                            Control::action(actions, value).as_deref(),
                            Some("bad") | Some("die")
                        )
                    })
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Control::Required => "required".into(),
            Control::Requisite => "requisite".into(),
            Control::Sufficient => "sufficient".into(),
            Control::Optional => "optional".into(),
            Control::Bracket(actions) => {
                let inner: Vec<String> = actions.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("[{}]", inner.join(" "))
            }
        }
    }
}

/// One module line of the auth stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// `file:line` it comes from.
    pub origin: String,
    pub control: Control,
    /// The module as written (a name such as `pam_unix.so` or an absolute path).
    pub module: String,
    /// Its arguments, split as libpam splits them (`[a b]` is one argument `a b`).
    pub args: Vec<String>,
    /// How many `substack`s deep: `done` and jumps in a substack end only the substack.
    pub substack_depth: usize,
}

impl Rule {
    /// The module's file name, without directories.
    pub fn module_name(&self) -> &str {
        self.module.rsplit('/').next().unwrap_or(&self.module)
    }

    /// Whether this is pam_otp (installed as `pam_otp.so`, or the built `libpam_otp.so`).
    pub fn is_pam_otp(&self) -> bool {
        matches!(self.module_name(), "pam_otp.so" | "libpam_otp.so")
    }
}

/// Something in the files that libpam would not read as meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackProblem {
    pub origin: String,
    pub message: String,
}

/// A service's auth stack, flattened, and what got in the way of reading it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthStack {
    pub rules: Vec<Rule>,
    pub problems: Vec<StackProblem>,
}

/// How deep includes may nest before they count as a loop.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Reads the auth stack of `service`. `load(name)` returns the text of a file named in
/// the stack (the service itself, or an include: a name relative to the PAM directory or
/// an absolute path) and the path to report it as, or `None` if there is no such file.
pub fn auth_stack(
    service: &str,
    load: &dyn Fn(&str) -> Option<(String, String)>,
) -> Option<AuthStack> {
    let (path, text) = load(service)?;
    let mut stack = AuthStack::default();
    read_file(&path, &text, 0, 0, load, &mut stack);
    Some(stack)
}

fn read_file(
    path: &str,
    text: &str,
    nesting: usize,
    substack_depth: usize,
    load: &dyn Fn(&str) -> Option<(String, String)>,
    stack: &mut AuthStack,
) {
    for (number, line) in logical_lines(text) {
        let origin = format!("{path}:{number}");
        let problem = |stack: &mut AuthStack, message: String| {
            stack.problems.push(StackProblem {
                origin: origin.clone(),
                message,
            })
        };
        let words = split_words(&line);
        let Some(first) = words.first() else { continue };
        // `@include FILE`: every line of FILE, whatever its type (only auth lines are kept).
        if first == "@include" {
            let Some(target) = words.get(1) else {
                problem(stack, "@include without a file name".into());
                continue;
            };
            include(target, nesting, substack_depth, &origin, load, stack);
            continue;
        }
        let kind = first.trim_start_matches('-').to_ascii_lowercase();
        if kind != "auth" {
            if !matches!(kind.as_str(), "account" | "session" | "password") {
                problem(stack, format!("unknown type {first:?}"));
            }
            continue;
        }
        let Some(control_word) = words.get(1) else {
            problem(stack, "no control field".into());
            continue;
        };
        let Some(module) = words.get(2) else {
            problem(stack, "no module".into());
            continue;
        };
        let control = match control_word.to_ascii_lowercase().as_str() {
            "required" => Control::Required,
            "requisite" => Control::Requisite,
            "sufficient" => Control::Sufficient,
            "optional" => Control::Optional,
            "include" | "substack" => {
                let depth = substack_depth + usize::from(control_word == "substack");
                include(module, nesting, depth, &origin, load, stack);
                continue;
            }
            word if word.starts_with('[') => Control::Bracket(bracket_actions(word)),
            word => {
                problem(stack, format!("unknown control {word:?}"));
                continue;
            }
        };
        stack.rules.push(Rule {
            origin: origin.clone(),
            control,
            module: module.clone(),
            args: words[3..].to_vec(),
            substack_depth,
        });
    }
}

fn include(
    target: &str,
    nesting: usize,
    substack_depth: usize,
    origin: &str,
    load: &dyn Fn(&str) -> Option<(String, String)>,
    stack: &mut AuthStack,
) {
    if nesting >= MAX_INCLUDE_DEPTH {
        stack.problems.push(StackProblem {
            origin: origin.into(),
            message: format!("includes nest more than {MAX_INCLUDE_DEPTH} deep (a loop?)"),
        });
        return;
    }
    match load(target) {
        Some((path, text)) => read_file(&path, &text, nesting + 1, substack_depth, load, stack),
        None => stack.problems.push(StackProblem {
            origin: origin.into(),
            message: format!("includes {target:?}, which does not exist"),
        }),
    }
}

/// `success=1 default=ignore` from `[success=1 default=ignore]`, lower-cased.
fn bracket_actions(word: &str) -> Vec<(String, String)> {
    word.trim_start_matches('[')
        .trim_end_matches(']')
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_ascii_lowercase()))
        .collect()
}

/// The file's lines with comments removed and `\`-continued lines joined, numbered by
/// the line they start on.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let (start, mut joined) = pending.take().unwrap_or((index + 1, String::new()));
        let (body, continued) = match raw.strip_suffix('\\') {
            Some(body) => (body, true),
            None => (raw, false),
        };
        joined.push_str(body);
        joined.push(' ');
        if continued {
            pending = Some((start, joined));
            continue;
        }
        let without_comment = match joined.find('#') {
            Some(at) => &joined[..at],
            None => &joined,
        };
        if !without_comment.trim().is_empty() {
            out.push((start, without_comment.trim().to_string()));
        }
    }
    if let Some((start, joined)) = pending {
        out.push((start, joined.trim().to_string()));
    }
    out
}

/// Splits a line into words as libpam does: `[...]` is one word (the brackets stay on
/// a control field and are dropped from an argument; `\]` is a literal `]`).
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '[' {
            // The first two words are type and control: keep the control's brackets.
            let keep = words.len() == 1;
            chars.next();
            if keep {
                word.push('[');
            }
            while let Some(c) = chars.next() {
                match c {
                    '\\' if chars.peek() == Some(&']') => word.push(chars.next().unwrap_or(']')),
                    ']' => break,
                    c => word.push(c),
                }
            }
            if keep {
                word.push(']');
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn stack(files: &[(&str, &str)], service: &str) -> AuthStack {
        let files: HashMap<String, String> = files
            .iter()
            .map(|(name, text)| (name.to_string(), text.to_string()))
            .collect();
        let load = |name: &str| {
            files
                .get(name)
                .map(|text| (format!("/etc/pam.d/{name}"), text.clone()))
        };
        auth_stack(service, &load).expect("service exists")
    }

    const COMMON_AUTH: &str = "\
auth	[success=1 default=ignore]	pam_unix.so nullok
auth	requisite			pam_deny.so
auth	required			pam_permit.so
";

    #[test]
    fn includes_are_followed_in_place() {
        let s = stack(
            &[
                ("common-auth", COMMON_AUTH),
                (
                    "sudo",
                    "#%PAM-1.0\nsession required pam_limits.so\n@include common-auth\nauth required pam_otp.so nullok\n@include common-account\n",
                ),
                ("common-account", "account required pam_unix.so\n"),
            ],
            "sudo",
        );
        let modules: Vec<&str> = s.rules.iter().map(|r| r.module.as_str()).collect();
        assert_eq!(
            modules,
            ["pam_unix.so", "pam_deny.so", "pam_permit.so", "pam_otp.so"]
        );
        assert_eq!(s.rules[0].origin, "/etc/pam.d/common-auth:1");
        assert_eq!(s.rules[3].origin, "/etc/pam.d/sudo:4");
        assert_eq!(s.rules[3].args, ["nullok"]);
        assert_eq!(
            s.rules[0].control.on_success().as_deref(),
            Some("1"),
            "{:?}",
            s.rules[0].control
        );
        assert!(s.problems.is_empty(), "{:?}", s.problems);
    }

    #[test]
    fn substack_rules_are_marked_and_include_takes_only_auth() {
        let s = stack(
            &[
                ("both", "auth sufficient pam_a.so\naccount required pam_b.so\n"),
                (
                    "svc",
                    "auth substack both\nauth include both\nauth required /lib/x/pam_otp.so [prompt=Code please: ] debug\n",
                ),
            ],
            "svc",
        );
        assert_eq!(s.rules.len(), 3);
        assert_eq!(s.rules[0].substack_depth, 1);
        assert_eq!(s.rules[1].substack_depth, 0);
        assert!(s.rules[2].is_pam_otp());
        assert_eq!(s.rules[2].args, ["prompt=Code please: ", "debug"]);
    }

    #[test]
    fn missing_includes_loops_and_junk_are_problems() {
        let s = stack(
            &[
                ("loop", "@include loop\n"),
                (
                    "svc",
                    "@include nowhere\nauth frobnicate pam_x.so\nauth required\n@include loop\n",
                ),
            ],
            "svc",
        );
        let messages: Vec<&str> = s.problems.iter().map(|p| p.message.as_str()).collect();
        assert!(messages
            .iter()
            .any(|m| m.contains("\"nowhere\", which does not exist")));
        assert!(messages.iter().any(|m| m.contains("unknown control")));
        assert!(messages.iter().any(|m| m.contains("no module")));
        assert!(messages.iter().any(|m| m.contains("a loop?")));
    }

    #[test]
    fn continued_lines_and_comments() {
        let s = stack(
            &[(
                "svc",
                "auth \\\n  required pam_otp.so # the code\n# auth sufficient pam_permit.so\n",
            )],
            "svc",
        );
        assert_eq!(s.rules.len(), 1);
        assert_eq!(s.rules[0].control, Control::Required);
        assert!(s.rules[0].args.is_empty());
        assert_eq!(s.rules[0].origin, "/etc/pam.d/svc:1");
    }

    #[test]
    fn controls_say_what_failure_and_success_do() {
        assert!(Control::Required.failure_counts());
        assert!(!Control::Optional.failure_counts());
        assert!(Control::Requisite.failure_counts());
        let die = Control::Bracket(bracket_actions("[success=ok default=die]"));
        assert!(die.failure_counts());
        let ignore = Control::Bracket(bracket_actions("[success=ok default=ignore]"));
        assert!(!ignore.failure_counts());
        assert_eq!(Control::Sufficient.on_success().as_deref(), Some("done"));
    }
}
