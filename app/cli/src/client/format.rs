//! Output as the docker CLI prints it: Go's text/tabwriter with the docker CLI's settings
//! (minimum width 10, padding 3), `--format` templates with `{{.Field}}` and `{{json .}}` and
//! the `table` prefix, and go-units' human durations and sizes.

use std::fmt::Write as _;

/// One row: (template field, column header, value) in the default column order.
pub type Row = Vec<(&'static str, &'static str, String)>;

/// Go's `tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)` over tab-separated lines: every cell but the
/// last of a line is padded to its column's width (the widest cell plus 3, at least 10).
pub fn tabwrite(lines: &[String]) -> String {
    tabwrite_min(lines, 10)
}

/// [`tabwrite`] with another minimum cell width (`docker top` uses 20).
pub fn tabwrite_min(lines: &[String], min: usize) -> String {
    let cells: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let columns = cells
        .iter()
        .map(|c| c.len().saturating_sub(1))
        .max()
        .unwrap_or(0);
    let mut widths = vec![min; columns];
    for line in &cells {
        for (i, cell) in line.iter().take(line.len().saturating_sub(1)).enumerate() {
            widths[i] = widths[i].max(cell.chars().count() + 3);
        }
    }
    let mut out = String::new();
    for line in &cells {
        for (i, cell) in line.iter().enumerate() {
            if i + 1 < line.len() {
                let _ = write!(out, "{cell:<width$}", width = widths[i]);
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

#[derive(Debug, thiserror::Error)]
#[error("template parsing error: {0}")]
pub struct TemplateError(String);

enum Piece {
    Text(String),
    Field(&'static str, &'static str),
    Json,
}

/// A parsed `--format`: Go-template-like text where `{{.Field}}` is a column and `{{json .}}`
/// the whole row as JSON; `table` in front prints a header and aligns the columns.
pub struct Template {
    table: bool,
    pieces: Vec<Piece>,
}

impl Template {
    /// `fields`: the (field, header) pairs a row has.
    pub fn parse(
        format: &str,
        fields: &[(&'static str, &'static str)],
    ) -> Result<Template, TemplateError> {
        let (table, body) = match format.strip_prefix("table") {
            Some(rest) => (true, rest),
            None => (false, format),
        };
        let body = body
            .trim_matches(' ')
            .replace("\\t", "\t")
            .replace("\\n", "\n");
        let mut pieces = Vec::new();
        let mut rest = body.as_str();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_owned()));
            }
            let end = rest[start..]
                .find("}}")
                .ok_or_else(|| TemplateError(format!("unclosed action in {format:?}")))?;
            let action = rest[start + 2..start + end].trim().trim_matches('-').trim();
            if action == "json ." {
                pieces.push(Piece::Json);
            } else if let Some(name) = action.strip_prefix('.') {
                let (field, header) = fields
                    .iter()
                    .find(|(f, _)| *f == name)
                    .copied()
                    .ok_or_else(|| TemplateError(format!("can't evaluate field {name}")))?;
                pieces.push(Piece::Field(field, header));
            } else {
                return Err(TemplateError(format!(
                    "unsupported action {{{{{action}}}}}"
                )));
            }
            rest = &rest[start + end + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Template { table, pieces })
    }

    fn line(&self, value: impl Fn(&'static str, &'static str) -> String, json: &str) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                Piece::Field(f, h) => value(f, h),
                Piece::Json => json.to_owned(),
            })
            .collect()
    }

    pub fn render(&self, rows: &[Row]) -> String {
        let lines: Vec<String> = rows
            .iter()
            .map(|row| {
                let json = serde_json::Value::Object(
                    row.iter()
                        .map(|(f, _, v)| ((*f).to_owned(), serde_json::Value::String(v.clone())))
                        .collect(),
                )
                .to_string();
                self.line(
                    |f, _| {
                        row.iter()
                            .find(|(k, _, _)| *k == f)
                            .map(|(_, _, v)| v.clone())
                            .unwrap_or_default()
                    },
                    &json,
                )
            })
            .collect();
        if !self.table {
            return lines.iter().map(|l| format!("{l}\n")).collect();
        }
        let header = self.line(|_, h| h.to_owned(), "");
        let mut all = vec![header];
        all.extend(lines);
        tabwrite(&all)
    }
}

/// go-units' HumanDuration: "Less than a second", "3 minutes", "About an hour", "2 days".
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    if s < 1 {
        return "Less than a second".into();
    }
    if s == 1 {
        return "1 second".into();
    }
    if s < 60 {
        return format!("{s} seconds");
    }
    let m = s / 60;
    if m == 1 {
        return "About a minute".into();
    }
    if m < 60 {
        return format!("{m} minutes");
    }
    let h = ((s as f64) / 3600.0 + 0.5) as i64;
    if h == 1 {
        return "About an hour".into();
    }
    if h < 48 {
        return format!("{h} hours");
    }
    if h < 24 * 7 * 2 {
        return format!("{} days", h / 24);
    }
    if h < 24 * 30 * 2 {
        return format!("{} weeks", h / 24 / 7);
    }
    if h < 24 * 365 * 2 {
        return format!("{} months", h / 24 / 30);
    }
    format!("{} years", s / 3600 / 24 / 365)
}

/// "3 minutes ago" for a Unix time.
pub fn ago(unix: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    format!("{} ago", human_duration(now - unix))
}

const DECIMAL: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
const BINARY: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

/// go-units' CustomSize: `bytes` divided by `base` until under it, printed with `precision`
/// significant digits and the unit reached.
fn scaled(bytes: f64, base: f64, units: &[&str; 9], precision: i32) -> String {
    let mut size = bytes.max(0.0);
    let mut i = 0;
    while size >= base && i < units.len() - 1 {
        size /= base;
        i += 1;
    }
    format!("{}{}", g(size, precision), units[i])
}

/// go-units' HumanSizeWithPrecision(size, 3): decimal units, `%.3g` (images, stats I/O).
pub fn human_size(bytes: f64) -> String {
    scaled(bytes, 1000.0, &DECIMAL, 3)
}

/// go-units' HumanSize: decimal units, `%.4g` (`system df`, prune totals).
pub fn human_size_4(bytes: f64) -> String {
    scaled(bytes, 1000.0, &DECIMAL, 4)
}

/// go-units' BytesSize: binary units, `%.4g` (what `docker stats` prints for memory).
pub fn bytes_size(bytes: f64) -> String {
    scaled(bytes, 1024.0, &BINARY, 4)
}

/// Go's `%.{precision}g` for 0 <= v < 10^precision: significant digits, trailing zeros
/// dropped.
fn g(v: f64, precision: i32) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let digits = v.abs().log10().floor() as i32;
    let decimals = (precision - 1 - digits).max(0) as usize;
    let mut s = format!("{v:.decimals$}");
    // Rounding can carry into one digit more (999.5 → 1000): Go switches to an exponent then.
    if s.split('.')
        .next()
        .is_some_and(|int| int.len() > precision as usize)
    {
        return format!("1e+0{precision}");
    }
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    s
}

/// The docker CLI's Ellipsis: at most `width` characters, the last one "…" when cut.
pub fn ellipsis(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A 12-digit ID without "sha256:".
pub fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabwriter_pads_as_go_does() {
        let out = tabwrite(&["A\tBB\tC".into(), "longer cell\tx\tlast one".into()]);
        assert_eq!(
            out,
            "A             BB        C\nlonger cell   x         last one\n"
        );
    }

    #[test]
    fn templates_render_fields_json_and_tables() {
        let fields = [("ID", "CONTAINER ID"), ("Names", "NAMES")];
        let rows = vec![vec![
            ("ID", "CONTAINER ID", "abc".to_owned()),
            ("Names", "NAMES", "web".to_owned()),
        ]];
        let t = Template::parse("{{.Names}}: {{.ID}}", &fields).unwrap();
        assert_eq!(t.render(&rows), "web: abc\n");
        let t = Template::parse("table {{.ID}}\\t{{.Names}}", &fields).unwrap();
        assert_eq!(
            t.render(&rows),
            "CONTAINER ID   NAMES\nabc            web\n"
        );
        let t = Template::parse("{{json .}}", &fields).unwrap();
        assert_eq!(t.render(&rows), "{\"ID\":\"abc\",\"Names\":\"web\"}\n");
        assert!(Template::parse("{{.Nope}}", &fields).is_err());
        assert!(Template::parse("{{.ID", &fields).is_err());
    }

    #[test]
    fn units_match_go_units() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(45 * 60), "45 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5 * 3600), "5 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(20 * 86400), "2 weeks");
        assert_eq!(human_duration(90 * 86400), "3 months");
        assert_eq!(human_duration(800 * 86400), "2 years");
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size(999.0), "999B");
        assert_eq!(human_size(1234.0), "1.23kB");
        assert_eq!(human_size(4_261_000.0), "4.26MB");
        assert_eq!(human_size(100_000_000.0), "100MB");
        assert_eq!(human_size(1_500_000_000.0), "1.5GB");
        assert_eq!(
            ellipsis("sh -c 'while true; do sleep 1; done'", 20),
            "sh -c 'while true; …"
        );
        assert_eq!(ellipsis("true", 20), "true");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(bytes_size(0.0), "0B");
        assert_eq!(bytes_size(1536.0), "1.5KiB");
        assert_eq!(bytes_size(64.0 * 1024.0 * 1024.0), "64MiB");
        assert_eq!(bytes_size(1.9329 * 1024.0 * 1024.0 * 1024.0), "1.933GiB");
    }
}
