//! A PAM service's auth stack as libpam builds it: the lines of its file, with
//! `@include`, `include` and `substack` followed. Pure: files come from a loader.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::rc::Rc;

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

/// Something in the files that libpam would not read as meant, or that doctor would not
/// read at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackProblem {
    pub origin: String,
    pub kind: ProblemKind,
    pub message: String,
}

/// What kind of problem: each is its own finding, with its own fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// A line libpam cannot use as written (including an include of a missing file).
    Syntax,
    /// A file named in the stack that is there but was not read (not a regular file, too
    /// large, unreadable).
    Unreadable,
    /// Includes nested deeper than libpam follows them.
    TooDeep,
    /// Includes that fan out past what doctor follows for one service.
    TooLarge,
}

/// A service's auth stack, flattened, and what got in the way of reading it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthStack {
    pub rules: Vec<Rule>,
    pub problems: Vec<StackProblem>,
}

/// Why the loader did not return a file named in the stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// There is no such file.
    Missing,
    /// It is there but was not read; why, said of the file ("is a FIFO, not a regular
    /// file").
    NotRead(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Missing => write!(f, "does not exist"),
            LoadError::NotRead(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for LoadError {}

/// The loader: the text of a file named in the stack (the service itself, or an include:
/// a name relative to the PAM directory or an absolute path) and the path to report it as.
pub type Load<'a> = &'a dyn Fn(&str) -> Result<(String, String), LoadError>;

/// How many files deep libpam follows includes, the service's own file counted: it
/// refuses to open one more.
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// How much one service's stack may make doctor read, counting a file each time it is
/// included: includes that fan out multiply (eight per file, sixteen deep, is 8^15
/// copies of the last file), and doctor must finish on a machine it is repairing.
pub const MAX_FILES_FOLLOWED: usize = 256;
pub const MAX_TEXT_FOLLOWED: usize = 1024 * 1024;

/// Reads the auth stack of `service`; the loader's error if the service's own file cannot
/// be read.
pub fn auth_stack(service: &str, load: Load) -> Result<AuthStack, LoadError> {
    let mut walk = Walk {
        load,
        files: HashMap::new(),
        files_followed: 0,
        text_followed: 0,
        exhausted: false,
        seen_problems: HashSet::new(),
        stack: AuthStack::default(),
    };
    let file = walk.file(service)?;
    walk.follow(&file, "", 0, 0);
    Ok(walk.stack)
}

/// A file's logical lines, parsed once however often it is included.
struct ParsedFile {
    path: String,
    text_len: usize,
    lines: Vec<(usize, String)>,
}

/// One reading of a stack: the files loaded so far and the budget spent.
struct Walk<'a> {
    load: Load<'a>,
    files: HashMap<String, Result<Rc<ParsedFile>, LoadError>>,
    files_followed: usize,
    text_followed: usize,
    /// The budget is spent: nothing more is read.
    exhausted: bool,
    /// A file included many times would repeat its problems; each is said once.
    seen_problems: HashSet<(String, String)>,
    stack: AuthStack,
}

impl Walk<'_> {
    fn file(&mut self, name: &str) -> Result<Rc<ParsedFile>, LoadError> {
        if let Some(known) = self.files.get(name) {
            return known.clone();
        }
        let parsed = (self.load)(name).map(|(path, text)| {
            Rc::new(ParsedFile {
                path,
                text_len: text.len(),
                lines: logical_lines(&text),
            })
        });
        self.files.insert(name.to_string(), parsed.clone());
        parsed
    }

    fn problem(&mut self, origin: &str, kind: ProblemKind, message: String) {
        // Nesting too deep is one fault of the whole tree, however many lines reach it.
        let place = match kind {
            ProblemKind::TooDeep => "",
            ProblemKind::Syntax | ProblemKind::Unreadable | ProblemKind::TooLarge => origin,
        };
        if self
            .seen_problems
            .insert((place.to_string(), message.clone()))
        {
            self.stack.problems.push(StackProblem {
                origin: origin.to_string(),
                kind,
                message,
            });
        }
    }

    /// Counts `file` against the budget (`origin`: the line that includes it); false,
    /// with the problem said once, when it is spent.
    fn spend(&mut self, file: &ParsedFile, origin: &str) -> bool {
        self.files_followed += 1;
        self.text_followed = self.text_followed.saturating_add(file.text_len);
        if self.files_followed > MAX_FILES_FOLLOWED || self.text_followed > MAX_TEXT_FOLLOWED {
            self.exhausted = true;
            let origin = if origin.is_empty() {
                &file.path
            } else {
                origin
            };
            self.problem(
                origin,
                ProblemKind::TooLarge,
                format!(
                    "following the includes reads more than {MAX_FILES_FOLLOWED} files or \
                     {} MiB (includes fan out): doctor stopped there, and checked only \
                     the stack before it",
                    MAX_TEXT_FOLLOWED / (1024 * 1024)
                ),
            );
        }
        !self.exhausted
    }

    /// Adds the auth lines of `file` (at `nesting` files below the service's own, included
    /// from `origin`) to the stack.
    fn follow(&mut self, file: &ParsedFile, origin: &str, nesting: usize, substack_depth: usize) {
        if !self.spend(file, origin) {
            return;
        }
        for (number, line) in &file.lines {
            if self.exhausted {
                return;
            }
            let origin = format!("{}:{number}", file.path);
            let syntax = |walk: &mut Walk, message: String| {
                walk.problem(&origin, ProblemKind::Syntax, message)
            };
            let words = split_words(line);
            let Some(first) = words.first() else { continue };
            // `@include FILE`: every line of FILE, whatever its type (only auth lines are kept).
            if first == "@include" {
                let Some(target) = words.get(1) else {
                    syntax(self, "@include without a file name".into());
                    continue;
                };
                self.include(target, nesting, substack_depth, &origin);
                continue;
            }
            let kind = first.trim_start_matches('-').to_ascii_lowercase();
            if kind != "auth" {
                if !matches!(kind.as_str(), "account" | "session" | "password") {
                    syntax(self, format!("unknown type {first:?}"));
                }
                continue;
            }
            let Some(control_word) = words.get(1) else {
                syntax(self, "no control field".into());
                continue;
            };
            let Some(module) = words.get(2) else {
                syntax(self, "no module".into());
                continue;
            };
            let control = match control_word.to_ascii_lowercase().as_str() {
                "required" => Control::Required,
                "requisite" => Control::Requisite,
                "sufficient" => Control::Sufficient,
                "optional" => Control::Optional,
                "include" | "substack" => {
                    let depth = substack_depth + usize::from(control_word == "substack");
                    self.include(module, nesting, depth, &origin);
                    continue;
                }
                word if word.starts_with('[') => Control::Bracket(bracket_actions(word)),
                word => {
                    syntax(self, format!("unknown control {word:?}"));
                    continue;
                }
            };
            self.stack.rules.push(Rule {
                origin: origin.clone(),
                control,
                module: module.clone(),
                args: words[3..].to_vec(),
                substack_depth,
            });
        }
    }

    fn include(&mut self, target: &str, nesting: usize, substack_depth: usize, origin: &str) {
        if nesting + 1 >= MAX_INCLUDE_DEPTH {
            self.problem(
                origin,
                ProblemKind::TooDeep,
                format!(
                    "includes nest more than {MAX_INCLUDE_DEPTH} files deep (a loop?): libpam \
                     reads no deeper"
                ),
            );
            return;
        }
        match self.file(target) {
            Ok(file) => self.follow(&file, origin, nesting + 1, substack_depth),
            Err(LoadError::Missing) => self.problem(
                origin,
                ProblemKind::Syntax,
                format!("includes {target:?}, which does not exist"),
            ),
            Err(LoadError::NotRead(why)) => self.problem(
                origin,
                ProblemKind::Unreadable,
                format!("includes {target:?}, which {why}: not read"),
            ),
        }
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
                .ok_or(LoadError::Missing)
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

    /// `svc` includes `f1`, `f1` includes `f2` (`wide` times each), down to `f<deep>`,
    /// which holds one rule.
    fn tree(wide: usize, deep: usize) -> Vec<(String, String)> {
        let mut files = vec![("svc".to_string(), "@include f1\n".to_string())];
        for level in 1..deep {
            let line = format!("@include f{}\n", level + 1);
            files.push((format!("f{level}"), line.repeat(wide)));
        }
        files.push((format!("f{deep}"), "auth required pam_otp.so\n".into()));
        files
    }

    fn problems_of(stack: &AuthStack, kind: ProblemKind) -> Vec<&StackProblem> {
        stack.problems.iter().filter(|p| p.kind == kind).collect()
    }

    #[test]
    fn includes_nest_as_deep_as_libpam_reads_them_and_no_deeper() {
        // The service's file and fifteen below it: sixteen files, as libpam reads.
        let files = tree(1, MAX_INCLUDE_DEPTH - 1);
        let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (&n[..], &t[..])).collect();
        let s = stack(&files, "svc");
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!(s.rules.len(), 1);

        let files = tree(1, MAX_INCLUDE_DEPTH);
        let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (&n[..], &t[..])).collect();
        let s = stack(&files, "svc");
        let deep = problems_of(&s, ProblemKind::TooDeep);
        assert_eq!(deep.len(), 1, "{:?}", s.problems);
        assert_eq!(deep[0].origin, "/etc/pam.d/f15:1");
        assert!(s.rules.is_empty());
    }

    #[test]
    fn fan_out_stops_at_the_budget_and_each_file_is_loaded_once() {
        let files: HashMap<String, String> = tree(8, 14).into_iter().collect();
        let loads = std::cell::Cell::new(0);
        let load = |name: &str| {
            loads.set(loads.get() + 1);
            files
                .get(name)
                .map(|text| (name.to_string(), text.clone()))
                .ok_or(LoadError::Missing)
        };
        let s = auth_stack("svc", &load).expect("service exists");
        assert_eq!(loads.get(), 15, "one load per file");
        let large = problems_of(&s, ProblemKind::TooLarge);
        assert_eq!(large.len(), 1, "{:?}", s.problems);
        assert!(large[0].message.contains("256 files"), "{large:?}");
        assert!(s.rules.len() < MAX_FILES_FOLLOWED, "{}", s.rules.len());
    }

    #[test]
    fn a_file_not_read_is_a_problem_of_its_own() {
        let load = |name: &str| match name {
            "svc" => Ok(("svc".into(), "@include /tmp/fifo\n".into())),
            _ => Err(LoadError::NotRead("is a FIFO, not a regular file".into())),
        };
        let s = auth_stack("svc", &load).expect("service exists");
        assert_eq!(
            s.problems,
            [StackProblem {
                origin: "svc:1".into(),
                kind: ProblemKind::Unreadable,
                message: "includes \"/tmp/fifo\", which is a FIFO, not a regular file: not read"
                    .into(),
            }]
        );
        let refused = |_: &str| {
            Err(LoadError::NotRead(
                "is a directory, not a regular file".into(),
            ))
        };
        assert!(matches!(
            auth_stack("svc", &refused),
            Err(LoadError::NotRead(_))
        ));
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
