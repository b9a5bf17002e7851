//! How client commands print: kubectl-style tables, terminal-only colours and progress.

use std::io::IsTerminal;

/// Whether stderr is a terminal a person watches (progress is shown only then).
pub fn progress_wanted() -> bool {
    std::io::stderr().is_terminal()
}

/// Colours on a terminal only, and never when `NO_COLOR` is set (no-color.org).
fn colour_wanted(stream_is_terminal: bool) -> bool {
    stream_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[derive(Clone, Copy)]
pub enum Tone {
    Good,
    Bad,
    Pending,
}

/// `text` in the tone's colour when the stream (`stdout` unless `on_stderr`) is a terminal.
pub fn toned(text: &str, tone: Tone, on_stderr: bool) -> String {
    let terminal = if on_stderr {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    if !colour_wanted(terminal) {
        return text.to_owned();
    }
    let code = match tone {
        Tone::Good => "32",
        Tone::Bad => "31",
        Tone::Pending => "33",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// The line a failed command leaves on stderr.
pub fn failure_line(message: &str) -> String {
    format!("{} {message}", toned("✗", Tone::Bad, true))
}

/// A table with left-aligned columns separated by three spaces, as `kubectl get` prints.
#[derive(Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if c + 1 < row.len() {
                    let pad = widths[c] - cell.chars().count() + 3;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// kubectl's short ages: `45s`, `12m`, `5h`, `3d`.
pub fn age(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 120 => format!("{s}s"),
        s if s < 7_200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3_600),
        s => format!("{}d", s / 86_400),
    }
}

/// Seconds from an RFC 3339 time to now, when it parses.
pub fn seconds_since(time: &jiff::Timestamp) -> i64 {
    jiff::Timestamp::now().as_second() - time.as_second()
}

/// `main@sha1:0123456789abcdef...` shortened to `main@sha1:0123456`, as Flux's CLI shows it.
pub fn short_revision(revision: &str) -> String {
    match revision.rsplit_once("sha1:") {
        Some((prefix, sha)) if sha.len() > 7 => format!("{prefix}sha1:{}", &sha[..7]),
        _ => revision.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_like_kubectl() {
        let mut table = Table::new(&["NAME", "READY"]);
        table.row(vec!["a-long-name".into(), "True".into()]);
        assert_eq!(table.render(), "NAME          READY\na-long-name   True\n");
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(600), "10m");
        assert_eq!(age(36_000), "10h");
        assert_eq!(age(864_000), "10d");
        assert_eq!(age(-3), "0s");
    }

    #[test]
    fn revisions_are_shortened_to_seven_hex_digits() {
        let full = format!("main@sha1:{}", "a".repeat(40));
        assert_eq!(short_revision(&full), "main@sha1:aaaaaaa");
        assert_eq!(short_revision("v1"), "v1");
    }

    #[test]
    fn no_colour_off_a_terminal() {
        assert!(!colour_wanted(false));
    }
}
