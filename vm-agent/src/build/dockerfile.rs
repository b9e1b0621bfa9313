//! The Dockerfile parser: logical lines (`\` continuations, comments), instructions with their
//! `--flags`, exec (JSON) and shell forms, and the builder's variable expansion (`$VAR`,
//! `${VAR}`, `${VAR:-default}`, `${VAR:+alternative}`). Errors name the line.

use std::collections::BTreeMap;

const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// Upper case: `RUN`, `COPY`, ...
    pub cmd: String,
    /// `--name=value` flags, in order.
    pub flags: Vec<(String, String)>,
    /// The arguments after the flags, as written.
    pub rest: String,
    /// The arguments as a JSON string array, when they are one (exec form).
    pub json: Option<Vec<String>>,
}

impl Instruction {
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `Step` text as the classic builder prints it: `RUN echo hi`.
    pub fn text(&self) -> String {
        let mut s = self.cmd.clone();
        for (k, v) in &self.flags {
            s.push_str(&format!(" --{k}={v}"));
        }
        if !self.rest.is_empty() {
            s.push(' ');
            s.push_str(&self.rest);
        }
        s
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("dockerfile parse error on line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

fn err(line: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        line,
        message: message.into(),
    }
}

/// Parses a whole Dockerfile.
pub fn parse(text: &str) -> Result<Vec<Instruction>, ParseError> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let trimmed = raw.trim();
        if trimmed.starts_with('#') && (current.is_some() || !trimmed.is_empty()) {
            continue;
        }
        if trimmed.is_empty() && current.is_none() {
            continue;
        }
        let (body, continues) = match raw.trim_end().strip_suffix('\\') {
            Some(b) => (b, true),
            None => (raw.trim_end(), false),
        };
        let entry = current.get_or_insert_with(|| (n, String::new()));
        if !entry.1.is_empty() {
            entry.1.push(' ');
        }
        entry.1.push_str(body.trim());
        if !continues {
            let (line, logical) = current.take().expect("set above");
            out.push(instruction(line, &logical)?);
        }
    }
    if let Some((line, logical)) = current.take() {
        out.push(instruction(line, &logical)?);
    }
    if out.is_empty() {
        return Err(err(1, "the Dockerfile has no instructions"));
    }
    if out[0].cmd != "FROM"
        && !out
            .iter()
            .take_while(|i| i.cmd != "FROM")
            .all(|i| i.cmd == "ARG")
    {
        return Err(err(
            out[0].line,
            "no build stage in current context: the first instruction must be FROM (ARG may come before it)",
        ));
    }
    Ok(out)
}

fn instruction(line: usize, logical: &str) -> Result<Instruction, ParseError> {
    let logical = logical.trim();
    let (word, rest) = logical
        .split_once(char::is_whitespace)
        .unwrap_or((logical, ""));
    let cmd = word.to_ascii_uppercase();
    if !INSTRUCTIONS.contains(&cmd.as_str()) {
        return Err(err(line, format!("unknown instruction: {word}")));
    }
    let mut rest = rest.trim();
    let mut flags = Vec::new();
    if matches!(
        cmd.as_str(),
        "FROM" | "COPY" | "ADD" | "RUN" | "HEALTHCHECK"
    ) {
        while let Some(after) = rest.strip_prefix("--") {
            let (flag, tail) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
            let (k, v) = flag.split_once('=').unwrap_or((flag, "true"));
            flags.push((k.to_owned(), v.to_owned()));
            rest = tail.trim_start();
        }
    }
    if rest.is_empty() && cmd != "HEALTHCHECK" {
        return Err(err(line, format!("{cmd} requires at least one argument")));
    }
    let json = if rest.starts_with('[') {
        serde_json::from_str::<Vec<String>>(rest).ok()
    } else {
        None
    };
    Ok(Instruction {
        line,
        cmd,
        flags,
        rest: rest.to_owned(),
        json,
    })
}

/// Splits on whitespace, keeping quoted runs together and dropping the quotes (for ENV, LABEL,
/// ARG, COPY, EXPOSE, VOLUME, USER in shell form).
pub fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (q, '\\') if q != Some('\'') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                any = true;
            }
            (_, c) => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// `k=v` pairs of ENV and LABEL (or the old `ENV k v w` form).
pub fn pairs(line: usize, cmd: &str, s: &str) -> Result<Vec<(String, String)>, ParseError> {
    let ws = words(s);
    let first_plain = s.split_whitespace().next().unwrap_or("");
    if !first_plain.contains('=') {
        let (k, v) = s
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(|| err(line, format!("{cmd} must have two arguments")))?;
        return Ok(vec![(k.to_owned(), v.trim().to_owned())]);
    }
    ws.into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(err(line, format!("{cmd} names can not be blank: {w:?}"))),
        })
        .collect()
}

/// Expands `$VAR` and `${VAR...}` from `vars`; `\$` is a literal dollar.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&'$') {
            out.push('$');
            chars.next();
            continue;
        }
        if c != '$' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'{') {
            chars.next();
            let mut inner = String::new();
            for c in chars.by_ref() {
                if c == '}' {
                    break;
                }
                inner.push(c);
            }
            let (name, op, word) = if let Some((n, w)) = inner.split_once(":-") {
                (n, "-", w)
            } else if let Some((n, w)) = inner.split_once(":+") {
                (n, "+", w)
            } else {
                (inner.as_str(), "", "")
            };
            let value = vars.get(name).filter(|v| !v.is_empty());
            match (op, value) {
                ("-", None) => out.push_str(&expand(word, vars)),
                ("+", Some(_)) => out.push_str(&expand(word, vars)),
                ("+", None) => {}
                (_, v) => out.push_str(v.map_or("", String::as_str)),
            }
        } else {
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    name.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            if name.is_empty() {
                out.push('$');
            } else {
                out.push_str(vars.get(&name).map_or("", String::as_str));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logical_lines_flags_and_forms() {
        let df = "# syntax comment\nARG BASE=busybox\nFROM ${BASE} AS build\n\nRUN echo a \\\n  # a comment inside\n  && echo b\nCOPY --from=build --chown=1:2 a b /dst/\nCMD [\"sh\", \"-c\", \"echo hi\"]\n";
        let ins = parse(df).unwrap();
        assert_eq!(ins.len(), 5);
        assert_eq!((ins[1].cmd.as_str(), ins[1].line), ("FROM", 3));
        assert_eq!(ins[2].rest, "echo a && echo b");
        assert_eq!(ins[2].line, 5);
        assert_eq!(ins[3].flag("from"), Some("build"));
        assert_eq!(ins[3].flag("chown"), Some("1:2"));
        assert_eq!(ins[3].rest, "a b /dst/");
        assert_eq!(ins[4].json.as_deref().unwrap(), ["sh", "-c", "echo hi"]);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("FROM busybox\nRUN true\nRUNN false\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert_eq!(
            e.to_string(),
            "dockerfile parse error on line 3: unknown instruction: RUNN"
        );
        assert_eq!(parse("FROM busybox\nENV\n").unwrap_err().line, 2);
        assert_eq!(parse("RUN true\n").unwrap_err().line, 1);
        assert!(parse("\n# only\n").is_err());
    }

    #[test]
    fn words_pairs_and_expansion() {
        assert_eq!(words(r#"a "b c" 'd e' f\ g"#), ["a", "b c", "d e", "f g"]);
        assert_eq!(
            pairs(1, "ENV", r#"A=1 B="two words""#).unwrap(),
            [("A".into(), "1".into()), ("B".into(), "two words".into())]
        );
        assert_eq!(
            pairs(1, "ENV", "OLD form value").unwrap(),
            [("OLD".into(), "form value".into())]
        );
        let vars: BTreeMap<String, String> =
            [("A".into(), "x".into()), ("E".into(), String::new())].into();
        assert_eq!(
            expand("$A/${A}/${E:-d}/${A:+y}/${N:+z}/\\$A/$", &vars),
            "x/x/d/y//$A/$"
        );
    }
}
