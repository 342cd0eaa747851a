//! `.env` files: the deployment guide's way of giving the `APP_*` settings
//! (`APP_OBJECT_STORAGE__PROVIDER=s3` …), read with `dotenvy`.
//!
//! The file is read as text, not loaded into the process environment: only the `APP_*`
//! variables of maskstore's sections become a layer of the configuration (between the
//! config files and the real environment), each with the line it was set on. The file is
//! refused, naming the line and never the value, when it is not UTF-8, larger than
//! [`MAX_ENV_FILE_BYTES`], not a regular file, or has a line dotenvy cannot read. A
//! byte-order mark and Windows line ends are accepted.

use std::io::Read;
use std::path::{Path, PathBuf};

use maskstore_core::Origin;

use crate::{Error, Result};

/// The largest `.env` file read, in bytes.
pub const MAX_ENV_FILE_BYTES: u64 = 1024 * 1024;

/// The variables of one `.env` file, with where they are set.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct EnvFile {
    /// The file, as it was named.
    pub(crate) path: PathBuf,
    /// `(variable, value, line)` in file order.
    pub(crate) lines: Vec<(String, String, usize)>,
    /// The file's permission bits.
    pub(crate) mode: u32,
}

impl std::fmt::Debug for EnvFile {
    // The variables and lines, never the values (they hold secrets).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let vars: Vec<(&str, usize)> = self
            .lines
            .iter()
            .map(|(v, _, l)| (v.as_str(), *l))
            .collect();
        f.debug_struct("EnvFile")
            .field("path", &self.path)
            .field("vars", &vars)
            .field("mode", &format_args!("{:03o}", self.mode))
            .finish()
    }
}

impl EnvFile {
    /// The last value the file gives `var`, and its line.
    pub(crate) fn get(&self, var: &str) -> Option<(&str, usize)> {
        self.lines
            .iter()
            .rev()
            .find(|(v, value, _)| v == var && !value.is_empty())
            .map(|(_, value, line)| (value.as_str(), *line))
    }
}

/// Reads the `.env` file at `path`; `None` when there is none and `required` is false
/// (the default `./.env`). `named_by` is where the path was given, for errors.
pub(crate) fn read_env_file(
    path: &Path,
    required: bool,
    named_by: &Origin,
) -> Result<Option<EnvFile>> {
    let Some((bytes, mode)) = read_bounded(path, required, named_by)? else {
        return Ok(None);
    };
    let refuse = |line: usize, problem: String, fix: &str| Error::Config {
        key: "(env file)".to_string(),
        origin: Origin::EnvFile {
            path: path.to_path_buf(),
            line,
        },
        problem,
        fix: fix.to_string(),
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|b| **b == b'\n').count() + 1;
        refuse(
            line,
            format!("is not UTF-8 text (byte {at})"),
            "save the file as UTF-8 (iconv -t UTF-8), or quote binary values as hex or base64",
        )
    })?;
    // A byte-order mark (Windows editors) and CRLF line ends are no part of any value.
    let text = text
        .strip_prefix('\u{feff}')
        .unwrap_or(&text)
        .replace("\r\n", "\n");
    let mut parsed = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok(pair) => parsed.push(pair),
            Err(dotenvy::Error::LineParse(bad, at)) => {
                // dotenvy's message quotes the line, which may hold a secret: only its
                // number is named.
                let line = bad_line(&text, &parsed, &bad);
                return Err(refuse(
                    line,
                    format!("is not a NAME=value line (at character {})", at + 1),
                    "write one NAME=value per line; quote values holding spaces, '#' or quotes ('single' or \"double\"), and close every quote",
                ));
            }
            Err(e) => {
                return Err(refuse(
                    0,
                    format!("cannot be read as a .env file ({})", kind_of(&e)),
                    "write one NAME=value per line",
                ));
            }
        }
    }
    let lines = with_lines(&text, parsed);
    if let Some(line) = swallowed_dollar(&text, &lines) {
        return Err(refuse(
            line,
            "holds a $ that dotenvy would replace by a variable or by nothing (a bare $NAME, whose name ends at '_', a lone $, or ${NAME} of a variable that is not set)".to_string(),
            "for a literal $, put the value in single quotes ('…') or write \\$; for a variable, write ${NAME} of one that is set",
        ));
    }
    Ok(Some(EnvFile {
        path: path.to_path_buf(),
        lines,
        mode,
    }))
}

/// The line of the first value in which dotenvy would substitute something other than
/// `${NAME}` of a variable that is set (in the process, as dotenvy reads it, or on an
/// earlier line of the file). dotenvy 0.15 replaces a bare `$NAME` up to the first
/// character that is not alphanumeric (so `$MY_HOST` is `$MY` then `_HOST`), a lone `$` by
/// nothing, and an unset variable by nothing: a secret or URL holding a `$` would change
/// silently.
fn swallowed_dollar(text: &str, vars: &[(String, String, usize)]) -> Option<usize> {
    let starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    for (i, (_, _, line)) in vars.iter().enumerate() {
        let Some(from) = line.checked_sub(1).and_then(|l| starts.get(l)) else {
            continue;
        };
        let rest = &text[*from..];
        let Some(eq) = rest.find('=') else { continue };
        let value = rest[eq + 1..].trim_start_matches([' ', '\t']);
        let set =
            |name: &str| std::env::var(name).is_ok() || vars[..i].iter().any(|(v, _, _)| v == name);
        match references(value) {
            Some(names) if names.iter().all(|name| set(name)) => {}
            _ => return Some(*line),
        }
    }
    None
}

/// The names of the `${NAME}` references in a value as dotenvy reads it (quotes,
/// escapes, `#` comments after a blank), `None` when it holds a bare or lone `$`.
fn references(value: &str) -> Option<Vec<&str>> {
    let (mut strong, mut weak, mut escaped) = (false, false, false);
    let mut names = Vec::new();
    let mut chars = value.char_indices();
    while let Some((at, c)) = chars.next() {
        if escaped {
            escaped = false;
        } else if strong {
            strong = c != '\'';
        } else if c == '\n' && !weak {
            break;
        } else if c == '$' {
            let name = value[at + 1..].strip_prefix('{')?.split('}').next()?;
            let closed = value[at + 2 + name.len()..].starts_with('}');
            if name.is_empty() || !closed {
                return None;
            }
            names.push(name);
            chars.nth(name.chars().count() + 1);
        } else if weak {
            weak = c != '"';
            escaped = c == '\\';
        } else {
            match c {
                '\'' => strong = true,
                '"' => weak = true,
                '\\' => escaped = true,
                // Past a blank only a comment may follow.
                ' ' | '\t' => break,
                _ => {}
            }
        }
    }
    Some(names)
}

/// The line of dotenvy's refusal `bad`, which is the whole line (or the lines of an
/// unclosed quote) or, for a fault in the value, the value only: the first line after the
/// variables read so far that is no comment and ends with its first line.
fn bad_line(text: &str, parsed: &[(String, String)], bad: &str) -> usize {
    let first = bad.lines().next().unwrap_or_default();
    let after = with_lines(text, parsed.to_vec())
        .last()
        .map_or(0, |(_, _, line)| *line);
    text.lines()
        .enumerate()
        .skip(after)
        .find(|(_, l)| !l.trim_start().starts_with('#') && l.ends_with(first))
        .map_or(0, |(i, _)| i + 1)
}

/// What went wrong in dotenvy's terms, without its message (which may quote a value).
fn kind_of(e: &dotenvy::Error) -> &'static str {
    match e {
        dotenvy::Error::Io(_) => "a read error",
        dotenvy::Error::EnvVar(_) => "a variable it refers to is not valid",
        _ => "a syntax error",
    }
}

/// The file's bytes (at most [`MAX_ENV_FILE_BYTES`]) and mode. A symlink is followed: a
/// deployment often links `.env` to a shared file, and its mode is the target's.
fn read_bounded(path: &Path, required: bool, named_by: &Origin) -> Result<Option<(Vec<u8>, u32)>> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let cannot = |problem: String, fix: String| Error::Config {
        key: "(env file)".to_string(),
        origin: Origin::File(path.to_path_buf()),
        problem,
        fix,
    };
    // O_NONBLOCK: a FIFO named .env is refused below instead of waited on.
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(e) => {
            return Err(cannot(
                format!("cannot open the .env file named by {named_by}: {e}"),
                format!(
                    "check the path and that this user may read it (ls -l {})",
                    path.display()
                ),
            ));
        }
    };
    let metadata = file.metadata().map_err(|e| {
        cannot(
            format!("cannot inspect the .env file: {e}"),
            "check the file".into(),
        )
    })?;
    if !metadata.is_file() {
        return Err(cannot(
            "the .env file is not a regular file".into(),
            "give the path of a text file of NAME=value lines".into(),
        ));
    }
    if !required {
        check_owner(path, metadata.uid(), &cannot)?;
    }
    let too_big = || {
        cannot(
            format!("the .env file holds more than the {MAX_ENV_FILE_BYTES} bytes allowed"),
            "give a .env file of NAME=value lines only".into(),
        )
    };
    if metadata.size() > MAX_ENV_FILE_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    file.take(MAX_ENV_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            cannot(
                format!("cannot read the .env file: {e}"),
                "check the file".into(),
            )
        })?;
    if bytes.len() as u64 > MAX_ENV_FILE_BYTES {
        return Err(too_big());
    }
    Ok(Some((bytes, metadata.mode() & 0o777)))
}

/// The default `./.env` must be this user's or root's: found in the working directory
/// (a shared folder, /tmp), another user's would choose the endpoint and the keys, as a
/// foreign `.git` would for git (its `safe.directory`). A file named by `--env-file` or
/// `APP_ENV_FILE` is the operator's choice and read whoever owns it.
fn check_owner(path: &Path, owner: u32, cannot: &dyn Fn(String, String) -> Error) -> Result<()> {
    // Without /proc the owner cannot be compared; the file is then read as before.
    let Some(me) = process_uid() else {
        return Ok(());
    };
    if trusted_owner(owner, me) {
        return Ok(());
    }
    Err(cannot(
        format!(
            "the .env file in the working directory belongs to user {owner}, not to this user ({me}) or root, so another user could choose this program's settings"
        ),
        format!(
            "if you trust it, name it: --env-file {} (or APP_ENV_FILE); else remove it or run elsewhere",
            path.display()
        ),
    ))
}

/// Whether a file of `owner` may be taken unnamed by user `me`.
fn trusted_owner(owner: u32, me: u32) -> bool {
    owner == me || owner == 0
}

/// The effective user id of this process (the owner of `/proc/self`).
fn process_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Each parsed variable with the line that sets it: dotenvy yields them in file order, so
/// each is found at or after the line of the one before (a quoted value may span lines).
fn with_lines(text: &str, parsed: Vec<(String, String)>) -> Vec<(String, String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut next = 0;
    parsed
        .into_iter()
        .map(|(var, value)| {
            let found = (next..lines.len()).find(|&i| sets(lines[i], &var));
            let line = found.map_or(0, |i| i + 1);
            if let Some(i) = found {
                next = i + 1;
            }
            (var, value, line)
        })
        .collect()
}

/// Whether `line` sets `var`: `VAR=…`, `VAR = …` or `export VAR=…`.
fn sets(line: &str, var: &str) -> bool {
    let line = line.trim_start();
    let line = line
        .strip_prefix("export")
        .filter(|rest| rest.starts_with([' ', '\t']))
        .map_or(line, str::trim_start);
    line.strip_prefix(var)
        .is_some_and(|rest| rest.trim_start().starts_with('='))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(dir: &Path, bytes: &[u8]) -> PathBuf {
        let path = dir.join(".env");
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    fn read(bytes: &[u8]) -> Result<EnvFile> {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), bytes);
        read_env_file(&path, true, &Origin::Default).map(Option::unwrap)
    }

    fn vars(env: &EnvFile) -> Vec<(&str, &str, usize)> {
        env.lines
            .iter()
            .map(|(k, v, l)| (k.as_str(), v.as_str(), *l))
            .collect()
    }

    #[test]
    fn the_guides_block_reads_with_its_comments_and_lines() {
        let env = read(
            b"# AWS S3\nAPP_OBJECT_STORAGE__PROVIDER=s3\nAPP_OBJECT_STORAGE__ENDPOINT=\n\
              APP_OBJECT_STORAGE__ACCESS_KEY=AKIA...  # real key\n\n\
              APP_SIGNED_URL__DEFAULT_TTL=600\n",
        )
        .unwrap();
        assert_eq!(
            vars(&env),
            vec![
                ("APP_OBJECT_STORAGE__PROVIDER", "s3", 2),
                ("APP_OBJECT_STORAGE__ENDPOINT", "", 3),
                ("APP_OBJECT_STORAGE__ACCESS_KEY", "AKIA...", 4),
                ("APP_SIGNED_URL__DEFAULT_TTL", "600", 6),
            ]
        );
    }

    #[test]
    fn quotes_export_crlf_and_a_byte_order_mark_are_understood() {
        let env = read(
            "\u{feff}export A_ONE=\"two words\"\r\nB_TWO='a # not a comment'\r\n  C_THREE = spaced\r\n"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            vars(&env),
            vec![
                ("A_ONE", "two words", 1),
                ("B_TWO", "a # not a comment", 2),
                ("C_THREE", "spaced", 3),
            ]
        );
    }

    #[test]
    fn a_duplicate_is_listed_twice_and_the_last_wins() {
        let env = read(b"X_A=first\nX_B=other\nX_A=second\n").unwrap();
        assert_eq!(env.get("X_A"), Some(("second", 3)));
        assert_eq!(vars(&env)[0], ("X_A", "first", 1));
    }

    #[test]
    fn a_malformed_line_is_refused_by_number_without_its_text() {
        for (text, line) in [
            ("GOOD=1\nthis is not an assignment s3cr3t\n", 2),
            ("GOOD=1\nGOOD2=2\nUNCLOSED=\"s3cr3t\n", 3),
        ] {
            let e = read(text.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(&format!(".env line {line}")), "{e}");
            assert!(!e.contains("s3cr3t"), "{e}");
        }
    }

    #[test]
    fn a_bad_value_is_refused_naming_its_own_line() {
        // dotenvy quotes only the value of such a line (after `=`), not the line.
        for (text, line) in [
            ("# a comment x s3cr3t\nGOOD=1\nBAD=x s3cr3t\n", 3),
            ("GOOD=1\nBAD=\"bad \\q escape s3cr3t\"\n", 2),
            ("GOOD=1\n\nBAD=${UNCLOSED_s3cr3t\n", 3),
        ] {
            let e = read(text.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(&format!(".env line {line})")), "{text}: {e}");
            assert!(!e.contains("s3cr3t"), "{e}");
        }
    }

    #[test]
    fn non_utf8_is_refused_naming_the_line() {
        let e = read(b"A_B=ok\nA_C=caf\xe9\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn a_huge_file_a_folder_and_a_fifo_are_refused_and_a_missing_default_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let huge = file(
            dir.path(),
            &b"A_B=0123456789\n".repeat((MAX_ENV_FILE_BYTES / 15 + 1) as usize),
        );
        let e = read_env_file(&huge, true, &Origin::Default)
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than"), "{e}");
        let e = read_env_file(dir.path(), true, &Origin::Default)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let fifo = dir.path().join("fifo");
        crate::secret_file::testing::fifo(&fifo);
        let e = crate::secret_file::testing::at_once(move || {
            read_env_file(&fifo, true, &Origin::Default).map(|_| ())
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let missing = dir.path().join("none");
        assert!(
            read_env_file(&missing, false, &Origin::Default)
                .unwrap()
                .is_none()
        );
        let e = read_env_file(&missing, true, &Origin::Flag("--env-file".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--env-file") && e.contains("none"), "{e}");
    }

    #[test]
    fn a_dollar_dotenvy_would_swallow_is_refused_naming_the_line_not_the_value() {
        // dotenvy replaces `$NAME` (a name ends at `_`), `${NAME}` and even a lone `$`
        // outside single quotes, by a variable of the process or nothing: a secret with a
        // `$` would be cut silently.
        for (text, line) in [
            ("X_A=ok\nAPP_GATEWAY__SIGNING_SECRET=pa$$w0rd-s3cr3t\n", 2),
            ("X_A=\"abc$MY_s3cr3t\"\n", 1),
            ("X_A=ok\nX_B=ok\nX_C=http://$HOST_NAME:9000/s3cr3t\n", 3),
            ("X_A=${MASKSTORE_TEST_SURELY_UNSET_s3cr3t}\n", 1),
            ("X_A=\"multi\nline $HOME_s3cr3t\"\nX_B=ok\n", 1),
        ] {
            let e = read(text.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(&format!(".env line {line}")), "{text}: {e}");
            assert!(e.contains("single quotes"), "{e}");
            assert!(!e.contains("s3cr3t") && !e.contains("w0rd"), "{e}");
        }
        let path = std::env::var("PATH").unwrap();
        let env = read(
            b"X_D='pa$$word'\nX_E=pa\\$\\$word\nX_F=first # a $ in a comment\nX_G=${X_F}/more\nX_H=\"${PATH}\"\n",
        )
        .unwrap();
        assert_eq!(
            vars(&env),
            vec![
                ("X_D", "pa$$word", 1),
                ("X_E", "pa$$word", 2),
                ("X_F", "first", 3),
                ("X_G", "first/more", 4),
                ("X_H", path.as_str(), 5),
            ]
        );
    }

    #[test]
    fn a_default_env_file_of_another_user_is_refused_a_named_one_is_read() {
        // Found in the working directory (a shared folder, /tmp), another user's `.env`
        // would choose the endpoint and keys: only the user's own or root's is taken
        // without being named, as git's safe.directory does for a repository.
        assert!(trusted_owner(1000, 1000) && trusted_owner(0, 1000));
        assert!(!trusted_owner(1001, 1000));
        let me = process_uid().unwrap();
        if me != 0 {
            eprintln!("not root: the file cannot be given to another user here");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = file(
            dir.path(),
            b"APP_OBJECT_STORAGE__ENDPOINT=http://elsewhere\n",
        );
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let e = read_env_file(&path, false, &Origin::Default)
            .unwrap_err()
            .to_string();
        assert!(e.contains("user 65534") && e.contains("--env-file"), "{e}");
        let named = read_env_file(&path, true, &Origin::Flag("--env-file".into()))
            .unwrap()
            .unwrap();
        assert_eq!(
            named.get("APP_OBJECT_STORAGE__ENDPOINT"),
            Some(("http://elsewhere", 1))
        );
    }

    #[test]
    fn debug_names_variables_never_values() {
        let env = read(b"APP_OBJECT_STORAGE__SECRET_KEY=s3cr3t-value\n").unwrap();
        let shown = format!("{env:?}");
        assert!(shown.contains("APP_OBJECT_STORAGE__SECRET_KEY"), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}
