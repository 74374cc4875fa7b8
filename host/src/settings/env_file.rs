//! `--env-file`: the `.env` format that docker, dotenv and most shells'
//! users already write, so `${NAME}` in a sidecar's `[env]` can come from a
//! file instead of the host's environment.

use std::collections::BTreeMap;
use std::path::Path;

use super::{SettingsError, is_env_name};

/// Parses `.env` text for `--env-file`: `NAME=VALUE` lines, blank lines,
/// `#` comments (whole lines, or after whitespace following an unquoted
/// value), an optional `export ` prefix, and values bare, in single quotes
/// (literal) or in double quotes (with `\n`, `\r`, `\t`, `\"` and `\\`
/// escapes). No `$` interpolation: values are taken as written.
///
/// A name set twice is an error rather than a silent last-wins. Errors give
/// the line number and never a value.
pub fn parse_env_file(file: &Path, text: &str) -> Result<BTreeMap<String, String>, SettingsError> {
    let mut vars = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export")
            .filter(|rest| rest.starts_with([' ', '\t']))
            .map_or(line, str::trim_start);
        let error = |name: Option<&str>, message: &str| {
            SettingsError::new(
                file,
                name.map(str::to_owned),
                format!("line {number}: {message}"),
            )
        };
        let Some((name, raw)) = line.split_once('=') else {
            return Err(error(None, "expected NAME=VALUE"));
        };
        // A name that is not one may be a value pasted on the wrong line:
        // say where, not what.
        let name = name.trim_end();
        if !is_env_name(name) {
            return Err(error(
                None,
                "the text before `=` is not an environment variable name: use letters, \
                 digits and _, not starting with a digit",
            ));
        }
        let value = parse_value(raw.trim_start()).map_err(|message| error(Some(name), message))?;
        if vars.insert(name.to_owned(), value).is_some() {
            return Err(error(Some(name), "set a second time; keep one line"));
        }
    }
    Ok(vars)
}

fn parse_value(raw: &str) -> Result<String, &'static str> {
    let quote = match raw.chars().next() {
        Some(quote @ ('"' | '\'')) => quote,
        _ => {
            let comment = raw
                .char_indices()
                .find(|&(at, c)| c == '#' && raw[..at].ends_with([' ', '\t']))
                .map_or(raw.len(), |(at, _)| at);
            return Ok(raw[..comment].trim_end().to_owned());
        }
    };
    let body = &raw[1..];
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            c if c == quote => {
                let rest = body[at + 1..].trim_start();
                if !rest.is_empty() && !rest.starts_with('#') {
                    return Err("unexpected text after the closing quote");
                }
                return Ok(value);
            }
            '\\' if quote == '"' => value.push(match chars.next() {
                Some((_, 'n')) => '\n',
                Some((_, 'r')) => '\r',
                Some((_, 't')) => '\t',
                Some((_, '"')) => '"',
                Some((_, '\\')) => '\\',
                _ => {
                    return Err(
                        "unknown escape in double quotes: use \\n, \\r, \\t, \\\" or \
                                \\\\, or single quotes for text taken as written",
                    );
                }
            }),
            c => value.push(c),
        }
    }
    Err("the quote is not closed on this line (a value is one line)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BTreeMap<String, String>, SettingsError> {
        parse_env_file(Path::new(".env"), text)
    }

    #[test]
    fn env_file_parses_quotes_comments_and_export() {
        let text = "# comment\n\
                    \n\
                    PLAIN=value\n\
                    SPACED = two words  \n\
                    export EXPORTED=yes\n\
                    \texport\tTABBED=1\n\
                    EMPTY=\n\
                    INLINE=abc # a comment\n\
                    HASH=a#b\n\
                    SINGLE='it ${is} \\n as written' # ok\n\
                    DOUBLE=\"line\\nnext \\\"q\\\" \\\\ # not a comment\"\n\
                    DOLLAR=$HOME\n\
                    exportNAME=x\r\n";
        let expected = [
            ("DOLLAR", "$HOME"),
            ("DOUBLE", "line\nnext \"q\" \\ # not a comment"),
            ("EMPTY", ""),
            ("EXPORTED", "yes"),
            ("HASH", "a#b"),
            ("INLINE", "abc"),
            ("PLAIN", "value"),
            ("SINGLE", "it ${is} \\n as written"),
            ("SPACED", "two words"),
            ("TABBED", "1"),
            ("exportNAME", "x"),
        ];
        let expected: BTreeMap<_, _> = expected
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(parse(text).unwrap(), expected);
    }

    #[test]
    fn env_file_errors_give_the_line_not_the_value() {
        let cases = [
            ("A=1\nsecret-value", None, "line 2: expected NAME=VALUE"),
            ("secret value=x", None, "line 1: the text before `=`"),
            ("A='secret", Some("A"), "line 1: the quote is not closed"),
            (
                "A=\"secret\" trailing",
                Some("A"),
                "line 1: unexpected text after",
            ),
            ("A=\"sec\\qret\"", Some("A"), "line 1: unknown escape"),
            ("A=1\n\nA=secret", Some("A"), "line 3: set a second time"),
        ];
        for (text, key, message) in cases {
            let error = parse(text).unwrap_err();
            assert_eq!(
                (error.key.as_deref(), error.file.as_path()),
                (key, Path::new(".env"))
            );
            assert!(error.message.starts_with(message), "{text}: {error}");
            assert!(!error.to_string().contains("secret"), "{error}");
        }
    }
}
