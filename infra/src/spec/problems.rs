//! Problems in the spec, each with its file, line, column and field: what every error about a
//! spec file looks like, and the locator that finds a field's position in the file's text.

use std::fmt;

use super::types::SourceFile;

/// One thing wrong with the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The spec file, relative to the workspace root where known.
    pub file: String,
    /// 1-based line and column, when the field could be located.
    pub position: Option<(usize, usize)>,
    /// Dotted field path, e.g. `callers[0].service` (empty for syntax errors).
    pub field: String,
    pub message: String,
}

impl Problem {
    /// A syntax or shape error from the TOML deserialiser.
    pub(crate) fn from_toml(source: &SourceFile, err: &toml::de::Error) -> Problem {
        Problem {
            file: source.path.clone(),
            position: err.span().map(|span| line_column(&source.text, span.start)),
            field: String::new(),
            message: err.message().trim_end_matches('.').to_owned(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the platform spec has {} problem(s):", self.0.len())?;
        for problem in &self.0 {
            writeln!(f, "  {problem}")?;
        }
        write!(f, "fix them, then run `cargo xtask gen`")
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// One step of a field path.
#[derive(Clone, Copy)]
pub(super) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Collects problems for one file, locating each field in the file's text.
pub(super) struct Sink<'a> {
    source: &'a SourceFile,
    doc: Option<toml::Spanned<toml::de::DeTable<'a>>>,
    out: &'a mut Vec<Problem>,
}

impl<'a> Sink<'a> {
    pub(super) fn new(source: &'a SourceFile, out: &'a mut Vec<Problem>) -> Sink<'a> {
        Sink {
            source,
            doc: toml::de::DeTable::parse(&source.text).ok(),
            out,
        }
    }

    pub(super) fn push(&mut self, path: &[Seg<'_>], message: String) {
        let position = self
            .locate(path)
            .map(|at| line_column(&self.source.text, at));
        let mut field = String::new();
        for seg in path {
            match seg {
                Seg::Key(k) if field.is_empty() => field.push_str(k),
                Seg::Key(k) => {
                    field.push('.');
                    field.push_str(k);
                }
                Seg::Index(i) => field.push_str(&format!("[{i}]")),
            }
        }
        self.out.push(Problem {
            file: self.source.path.clone(),
            position,
            field,
            message,
        });
    }

    /// Byte offset of the deepest part of `path` present in the file (defaults do not appear).
    fn locate(&self, path: &[Seg<'_>]) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let Seg::Key(first) = path.first()? else {
            return None;
        };
        let (_, mut value) = doc.get_ref().iter().find(|(k, _)| k.get_ref() == first)?;
        let mut at = value.span().start;
        for seg in &path[1..] {
            let next = match seg {
                Seg::Key(k) => value.get_ref().get(*k),
                Seg::Index(i) => value.get_ref().get(*i),
            };
            match next {
                Some(v) => {
                    value = v;
                    at = v.span().start;
                }
                None => break,
            }
        }
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::SpecFiles;

    #[test]
    fn unknown_fields_are_rejected_with_line_and_column() {
        let found = SpecFiles::minimal()
            .edit("api", "replicas = 2", "replica = 2")
            .problems();
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].starts_with("infra/services/api.toml:4:1: unknown field `replica`"),
            "{found:#?}"
        );
    }

    #[test]
    fn a_syntax_error_names_the_file_and_line() {
        let found = SpecFiles::minimal()
            .edit("platform", "[platform]", "[platform")
            .problems();
        assert_eq!(
            found,
            ["infra/platform.toml:1:10: unclosed table, expected `]`"]
        );
    }

    #[test]
    fn the_problem_list_ends_with_the_fixing_command() {
        let err = SpecFiles::new("[platform]\nname = 1\n")
            .parse()
            .expect_err("invalid");
        assert!(
            err.to_string()
                .ends_with("fix them, then run `cargo xtask gen`"),
            "{err}"
        );
    }
}
