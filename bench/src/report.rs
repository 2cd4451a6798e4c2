//! Markdown tables for the report (also printed to stdout).

use std::fmt::Write as _;

/// A titled table with a header row and an optional note under it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    /// Heading above the table.
    pub title: String,
    /// Column names.
    pub headers: Vec<String>,
    /// Cells, one `Vec` per row (short rows are padded).
    pub rows: Vec<Vec<String>>,
    /// Text under the table (what was measured, how to read it).
    pub note: String,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(title: impl Into<String>, headers: &[&str]) -> Self {
        Self {
            title: title.into(),
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            ..Self::default()
        }
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders as a Markdown section (`### title`, table, note). Pipes in
    /// cells are escaped.
    pub fn to_markdown(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|");
        let mut out = String::new();
        let _ = writeln!(out, "### {}\n", self.title);
        let _ = writeln!(
            out,
            "| {} |",
            self.headers
                .iter()
                .map(|h| esc(h))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(out, "|{}", "---|".repeat(self.headers.len()));
        for r in &self.rows {
            let cells: Vec<String> = (0..self.headers.len())
                .map(|i| r.get(i).map_or(String::new(), |c| esc(c)))
                .collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        if !self.note.is_empty() {
            let _ = writeln!(out, "\n{}", self.note);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_pads_short_rows_and_escapes_pipes() {
        let mut t = Table::new("B0", &["a", "b"]);
        t.row(vec!["1".into()]);
        t.row(vec!["x|y".into(), "2".into()]);
        t.note = "note".into();
        let md = t.to_markdown();
        assert_eq!(
            md,
            "### B0\n\n| a | b |\n|---|---|\n| 1 |  |\n| x\\|y | 2 |\n\nnote\n"
        );
    }
}
