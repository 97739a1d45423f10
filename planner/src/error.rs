//! The planner's one error type.

use std::fmt;

/// Where in a predicate an error was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// A place in SQL text: 1-based line and column.
    Text {
        /// 1-based line.
        line: u64,
        /// 1-based column (characters).
        column: u64,
    },
    /// A term of a DNF predicate: `dnf[conjunction][term]`.
    Dnf {
        /// Index of the conjunction (inner list).
        conjunction: usize,
        /// Index of the term in the conjunction.
        term: usize,
    },
    /// The position is not known.
    Unknown,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Text { line, column } => write!(f, "line {line}, column {column}"),
            Position::Dnf { conjunction, term } => write!(f, "term [{conjunction}][{term}]"),
            Position::Unknown => write!(f, "unknown position"),
        }
    }
}

/// Everything that can go wrong while planning.
///
/// Variants carry the context a user needs to fix the input (column, position, file, line).
/// A worker asks [`Error::is_retryable`] before retrying a task.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The predicate text is not valid SQL.
    #[error("syntax error in predicate at {position}: {message}")]
    Syntax {
        /// What the parser said.
        message: String,
        /// Where.
        position: Position,
    },
    /// The predicate names a column the schema does not have.
    #[error("unknown column {column:?} in predicate at {position} (available: {available})")]
    UnknownColumn {
        /// The column as written.
        column: String,
        /// Where it is written.
        position: Position,
        /// The schema's columns, comma separated.
        available: String,
    },
    /// A value or expression has a type the column cannot be compared with.
    #[error("type mismatch at {position}: column {column:?} is {expected}, compared with {found}")]
    TypeMismatch {
        /// The column.
        column: String,
        /// The column's type.
        expected: String,
        /// What it was compared with (value and type).
        found: String,
        /// Where.
        position: Position,
    },
    /// An operator or construct a predicate may not use.
    #[error("unsupported operator {operator:?} in predicate at {position}")]
    UnsupportedOperator {
        /// The operator or construct.
        operator: String,
        /// Where.
        position: Position,
    },
    /// A comparison with NULL (`a = NULL`, `a IN (NULL, …)`): never true under SQL's
    /// three-valued logic, so it would silently match no row.
    #[error(
        "column {column:?} is compared with NULL ({operator}) in predicate at {position}; a \
         comparison with NULL is never true and matches no row: use {suggestion}"
    )]
    NullComparison {
        /// The column (or expression) compared with NULL.
        column: String,
        /// The comparison as SQL spells it (`=`, `!=`, `IN`, `BETWEEN`, …).
        operator: String,
        /// What to write instead (`origin IS NULL`, …).
        suggestion: String,
        /// Where.
        position: Position,
    },
    /// A predicate that is not a boolean expression, or otherwise invalid.
    #[error("invalid predicate {predicate:?}: {reason}")]
    InvalidPredicate {
        /// The predicate text.
        predicate: String,
        /// Why.
        reason: String,
    },
    /// A predicate too long or too deeply nested to plan safely.
    #[error("predicate too large: {reason}")]
    PredicateTooLarge {
        /// Which bound it exceeds.
        reason: String,
    },
    /// An invalid planning option (region file line, dispatch column, sizes, ...).
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// What was invalid (e.g. `"regions line 3"`).
        what: String,
        /// Why.
        reason: String,
    },
    /// An input glob matched no file.
    #[error("no input file matches {pattern:?}")]
    EmptyGlob {
        /// The glob as given.
        pattern: String,
    },
    /// An input file is refused when it is listed or split: it does not exist, its format
    /// is unknown, it is empty, two inputs name it, or its Parquet footer is unreadable.
    /// Worded as terrace-format's [`Error::Input`](terrace_format::Error::Input), which
    /// reading an input raises.
    #[error("cannot read input {path:?}: {reason}")]
    Input {
        /// The input.
        path: String,
        /// Why.
        reason: String,
    },
    /// The object store failed.
    #[error("object store error on {path:?}: {source}")]
    ObjectStore {
        /// The path involved.
        path: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// The dataset format layer failed (manifest, segments, indices).
    #[error("dataset error while {context}: {source}")]
    Format {
        /// What the planner was doing.
        context: String,
        /// The format's error (boxed: it is large, and rare on hot paths).
        #[source]
        source: Box<terrace_format::Error>,
    },
    /// DataFusion failed outside predicate parsing.
    #[error("datafusion error while {context}: {source}")]
    DataFusion {
        /// What the planner was doing.
        context: String,
        /// DataFusion's error.
        #[source]
        source: datafusion::error::DataFusionError,
    },
    /// Arrow failed (finding the partition values of a read plan).
    #[error("arrow error while {context}: {source}")]
    Arrow {
        /// What the planner was doing.
        context: String,
        /// Arrow's error.
        #[source]
        source: arrow::error::ArrowError,
    },
}

impl Error {
    /// Whether trying again may succeed (transient store failures), as opposed to bad
    /// input that fails the same way every time. Store errors follow the format crate's
    /// one rule ([`terrace_format::is_retryable_store_error`]): permanent I/O failures
    /// (permission denied, no space, a name too long, …) are not retried.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::ObjectStore { source, .. } => terrace_format::is_retryable_store_error(source),
            Error::Format { source, .. } => source.is_retryable(),
            _ => false,
        }
    }

    pub(crate) fn format(context: impl Into<String>, source: terrace_format::Error) -> Self {
        Error::Format {
            context: context.into(),
            source: Box::new(source),
        }
    }

    /// A format error of an input file, met while listing or splitting (an empty file,
    /// an unreadable Parquet footer): an [`Error::Input`] as terrace-format words it, so
    /// the message is the one reading the file would give.
    pub(crate) fn input(source: terrace_format::Error) -> Self {
        match source {
            terrace_format::Error::Input { path, reason } => Error::Input { path, reason },
            terrace_format::Error::InputStore { path, source } => {
                Error::ObjectStore { path, source }
            }
            other => Error::format("reading an input", other),
        }
    }

    pub(crate) fn datafusion(
        context: impl Into<String>,
        source: datafusion::error::DataFusionError,
    ) -> Self {
        Error::DataFusion {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn arrow(context: impl Into<String>, source: arrow::error::ArrowError) -> Self {
        Error::Arrow {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// The planner's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the planner kept a copy of the format crate's retry rule that had
    /// drifted (it retried `NotImplemented`), and neither knew permanent I/O failures.
    #[test]
    fn store_errors_follow_the_format_crates_rule() {
        let store = |source: object_store::Error| Error::ObjectStore {
            path: "in/x.csv".into(),
            source,
        };
        let io = |kind: std::io::ErrorKind| object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::from(kind)),
        };
        assert!(!store(io(std::io::ErrorKind::PermissionDenied)).is_retryable());
        assert!(!store(io(std::io::ErrorKind::InvalidFilename)).is_retryable());
        assert!(store(io(std::io::ErrorKind::ConnectionReset)).is_retryable());
        let unimplemented = object_store::Error::NotImplemented {
            operation: "put".into(),
            implementer: "x".into(),
        };
        assert!(!store(unimplemented).is_retryable());
    }
}
