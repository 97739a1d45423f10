//! Predicates: SQL boolean text (or kartothek-style DNF) to a checked DataFusion [`Expr`].
//!
//! Parsing and typing are DataFusion's: the text is parsed by DataFusion's SQL parser
//! (sqlparser, with spans), planned by `SqlToRel` against the dataset schema, coerced and
//! simplified by the `ExprSimplifier`. The planner adds only checks DataFusion does not
//! make, each reported with the column and its position in the text:
//! - a column the schema does not have;
//! - a value whose type the column cannot be compared with. DataFusion would cast
//!   `a = 'x'` on an integer column to null and silently match nothing; here a string is
//!   accepted against a non-string column only when it converts exactly (`d = '2024-01-31'`
//!   on a date column), and is then replaced by the typed value;
//! - operators and constructs that make no sense in a row filter (subqueries, aggregates,
//!   window functions, JSON/regex operators, volatile functions);
//! - a comparison with NULL (`a = NULL`, `a != NULL`, `a IN (NULL, …)`, `a BETWEEN NULL
//!   AND 3`). SQL's three-valued logic makes it never true, so it would silently match no
//!   row where `a IS NULL` or `a IS NOT NULL` was meant.
//!
//! Identifiers are matched exactly as written (DataFusion's lower-casing of unquoted
//! identifiers is off), so a CSV header `Origin` is written `Origin` in a predicate.
//!
//! The predicate travels as text: [`Predicate::sql`] is what a task carries, and a worker
//! calls [`Predicate::parse`] on it again.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

use arrow::compute::CastOptions;
use arrow::datatypes::{DataType, Schema};
use arrow::util::display::FormatOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DataFusionError, ScalarValue};
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, Operator, lit};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::DFParserBuilder;
use datafusion::sql::sqlparser::ast::{self as sql_ast, Spanned};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Position, Result};
use crate::skeleton::{self, Limits, MAX_TERMS, Node, balanced, depth, rebalance, shorten};

/// sqlparser's recursion limit for one operand of a predicate: enough for
/// [`skeleton::MAX_NESTING`] levels of calls and brackets, which the skeleton bounds
/// before sqlparser sees the text (sqlparser grows its stack as it recurses).
const SQL_RECURSION_LIMIT: usize = 4 * skeleton::MAX_NESTING;

/// The deepest a checked predicate's expression may be. The skeleton's bounds keep a
/// predicate well within it; this is the last check before the expression goes to walks
/// DataFusion does not guard (Drop, Clone, Display, evaluation).
const MAX_EXPR_DEPTH: usize = 2048;

/// A comparison operator of a DNF term, as kartothek spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `==` (also accepted: `=`).
    #[serde(rename = "==", alias = "=")]
    Eq,
    /// `!=`.
    #[serde(rename = "!=")]
    NotEq,
    /// `<`.
    #[serde(rename = "<")]
    Lt,
    /// `<=`.
    #[serde(rename = "<=")]
    LtEq,
    /// `>`.
    #[serde(rename = ">")]
    Gt,
    /// `>=`.
    #[serde(rename = ">=")]
    GtEq,
    /// `in`: the value is a JSON array.
    #[serde(rename = "in")]
    In,
}

/// One DNF term: `(column, op, value)`; serialises as `["a", "==", 2]`.
pub type DnfTerm = (String, Op, serde_json::Value);

/// A predicate in disjunctive normal form: an OR of ANDs of terms, as in kartothek:
/// `[[("a", "==", 2), ("b", "in", ["x", "y"])], [("c", ">", 1.5)]]`.
pub type Dnf = Vec<Vec<DnfTerm>>;

/// A checked row filter over a dataset schema.
#[derive(Debug, Clone)]
pub struct Predicate {
    sql: String,
    expr: Expr,
}

impl PartialEq for Predicate {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr
    }
}

fn session() -> &'static SessionContext {
    static SESSION: OnceLock<SessionContext> = OnceLock::new();
    SESSION.get_or_init(|| {
        let mut config = SessionConfig::new();
        // Column names come from files (CSV headers, Parquet schemas) and are matched as
        // written; lower-casing would make `Origin` unreachable without quotes.
        config.options_mut().sql_parser.enable_ident_normalization = false;
        SessionContext::new_with_config(config)
    })
}

impl Predicate {
    /// Parse and type-check SQL boolean text against `schema`.
    ///
    /// ```
    /// # use arrow::datatypes::{DataType, Field, Schema};
    /// # use terrace_planner::Predicate;
    /// let schema = Schema::new(vec![Field::new("a", DataType::Int64, true)]);
    /// let p = Predicate::parse("a = 2 OR a IN (5, 7)", &schema)?;
    /// assert_eq!(p.sql(), "a = 2 OR a IN (5, 7)");
    /// assert!(Predicate::parse("a = 'x'", &schema).is_err());
    /// assert!(Predicate::parse("a = NULL", &schema).is_err()); // `a IS NULL` is meant
    /// # Ok::<(), terrace_planner::Error>(())
    /// ```
    pub fn parse(sql: &str, schema: &Schema) -> Result<Predicate> {
        Predicate::parse_within(sql, schema, Limits::USER)
    }

    /// [`Predicate::parse`] within `limits`: a task's predicate (the user's, ANDed with
    /// generated region and sample predicates) may be larger than a user's.
    pub(crate) fn parse_within(sql: &str, schema: &Schema, limits: Limits) -> Result<Predicate> {
        let text = sql.trim();
        if text.is_empty() {
            return Err(Error::InvalidPredicate {
                predicate: sql.to_string(),
                reason: "the predicate is empty".to_string(),
            });
        }
        // The AND / OR / NOT structure first, without recursion per term; then each
        // operand on its own through sqlparser and DataFusion's SQL planner.
        let skeleton = skeleton::parse(text, limits)?;
        let mut leaves = Vec::new();
        collect_leaves(&skeleton.root, &mut leaves);
        let mut parsed = Vec::with_capacity(leaves.len());
        let mut columns: HashMap<String, Position> = HashMap::new();
        for range in leaves {
            let leaf = DFParserBuilder::new(skeleton.leaf_tokens(range))
                .with_recursion_limit(SQL_RECURSION_LIMIT)
                .build()
                .and_then(|mut p| p.parse_into_expr())
                .map_err(|e| syntax_error(text, e, skeleton.after(range)))?;
            for (column, position) in check_sql_ast(&leaf.expr, schema)? {
                columns.entry(column).or_insert(position);
            }
            parsed.push(leaf);
        }
        let state = session().state();
        let df_schema = DFSchema::try_from(schema.clone())
            .map_err(|e| Error::datafusion("preparing the schema", e))?;
        let mut exprs = Vec::with_capacity(parsed.len());
        for leaf in parsed {
            exprs.push(
                state
                    .create_logical_expr_from_sql_expr(leaf, &df_schema)
                    .map_err(|e| Error::InvalidPredicate {
                        predicate: shorten(sql),
                        reason: e.strip_backtrace(),
                    })?,
            );
        }
        let mut exprs = exprs.into_iter();
        let expr = assemble(&skeleton.root, &mut exprs);
        let position = |column: &str| columns.get(column).cloned().unwrap_or(Position::Unknown);
        let expr = finish(expr, sql, schema, &df_schema, &position)?;
        Ok(Predicate {
            sql: text.to_string(),
            expr,
        })
    }

    /// Build a predicate from kartothek-style DNF, checked like SQL text; errors name the
    /// term (`dnf[i][j]`). The SQL text is generated from the expression.
    ///
    /// ```
    /// # use arrow::datatypes::{DataType, Field, Schema};
    /// # use terrace_planner::{Dnf, Predicate};
    /// let schema = Schema::new(vec![Field::new("a", DataType::Int64, true)]);
    /// let dnf: Dnf = serde_json::from_str(r#"[[["a", ">=", 2], ["a", "in", [2, 3]]]]"#)?;
    /// let p = Predicate::from_dnf(&dnf, &schema)?;
    /// assert_eq!(p.sql(), "((a >= 2) AND a IN (2, 3))");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_dnf(dnf: &Dnf, schema: &Schema) -> Result<Predicate> {
        let invalid = |reason: &str| Error::InvalidPredicate {
            predicate: serde_json::to_string(dnf).unwrap_or_default(),
            reason: reason.to_string(),
        };
        if dnf.is_empty() {
            return Err(invalid("an empty DNF (no conjunction) matches nothing"));
        }
        let df_schema = DFSchema::try_from(schema.clone())
            .map_err(|e| Error::datafusion("preparing the schema", e))?;
        let terms: usize = dnf.iter().map(Vec::len).sum();
        if terms > MAX_TERMS {
            return Err(Error::PredicateTooLarge {
                reason: format!("more than {MAX_TERMS} terms in the DNF"),
            });
        }
        let mut disjunction = Vec::with_capacity(dnf.len());
        for (i, conjunction) in dnf.iter().enumerate() {
            if conjunction.is_empty() {
                return Err(invalid("a conjunction is empty"));
            }
            let mut all = Vec::with_capacity(conjunction.len());
            for (j, (column, op, value)) in conjunction.iter().enumerate() {
                let position = Position::Dnf {
                    conjunction: i,
                    term: j,
                };
                let field = schema
                    .field_with_name(column)
                    .map_err(|_| Error::UnknownColumn {
                        column: column.clone(),
                        position: position.clone(),
                        available: available(schema),
                    })?;
                all.push(dnf_term(column, field.data_type(), *op, value, &position)?);
            }
            disjunction.extend(balanced(Operator::And, all));
        }
        let expr = balanced(Operator::Or, disjunction).ok_or_else(|| invalid("empty"))?;
        let sql = expr_to_sql(&expr)?;
        let expr = finish(expr, &sql, schema, &df_schema, &|_| Position::Unknown)?;
        Ok(Predicate { sql, expr })
    }

    /// The predicate as SQL text (what tasks carry).
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The checked, coerced and simplified expression.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Both predicates (`(a) AND (b)`), without re-checking.
    pub fn and(&self, other: &Predicate) -> Predicate {
        Predicate {
            sql: format!("({}) AND ({})", self.sql, other.sql),
            expr: self.expr.clone().and(other.expr.clone()),
        }
    }

    /// Names of the columns the predicate reads.
    pub fn columns(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .expr
            .column_refs()
            .into_iter()
            .map(|c| c.name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// A predicate from an already checked expression (internal: generated filters).
    pub(crate) fn from_checked_expr(expr: Expr, schema: &Schema) -> Result<Predicate> {
        // Balanced before anything walks it: the unparser recurses per level.
        let expr = rebalance(expr);
        let sql = expr_to_sql(&expr)?;
        let df_schema = DFSchema::try_from(schema.clone())
            .map_err(|e| Error::datafusion("preparing the schema", e))?;
        let expr = finish(expr, &sql, schema, &df_schema, &|_| Position::Unknown)?;
        Ok(Predicate { sql, expr })
    }
}

/// SQL text of an expression (DataFusion's unparser, default dialect).
pub(crate) fn expr_to_sql(expr: &Expr) -> Result<String> {
    datafusion::sql::unparser::expr_to_sql(expr)
        .map(|e| e.to_string())
        .map_err(|e| Error::datafusion("rendering a predicate as SQL", e))
}

fn available(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A parse error of an operand; `after` is the token that ended the operand, which
/// sqlparser saw as the end of input.
fn syntax_error(sql: &str, e: DataFusionError, after: Option<String>) -> Error {
    let message = e.strip_backtrace();
    let mut message = message
        .strip_prefix("SQL error: ")
        .unwrap_or(&message)
        .to_string();
    if let Some(after) = after {
        message = message.replace("found: EOF", &format!("found: {after}"));
    }
    let position = position_in_message(&message).unwrap_or(Position::Unknown);
    Error::Syntax {
        message: format!("{message} (in {:?})", shorten(sql)),
        position,
    }
}

/// The leaves of `node`, left to right.
fn collect_leaves<'a>(node: &'a Node, out: &mut Vec<&'a std::ops::Range<usize>>) {
    match node {
        Node::Leaf(range) => out.push(range),
        Node::Not(inner) => collect_leaves(inner, out),
        Node::And(items) | Node::Or(items) => {
            for item in items {
                collect_leaves(item, out);
            }
        }
    }
}

/// The expression of `node`, taking its leaves' expressions from `leaves` in order;
/// AND and OR become balanced trees.
fn assemble(node: &Node, leaves: &mut impl Iterator<Item = Expr>) -> Expr {
    match node {
        Node::Leaf(_) => leaves.next().expect("one expression per leaf"),
        Node::Not(inner) => Expr::Not(Box::new(assemble(inner, leaves))),
        Node::And(items) | Node::Or(items) => {
            let op = if matches!(node, Node::And(_)) {
                Operator::And
            } else {
                Operator::Or
            };
            let operands = items.iter().map(|i| assemble(i, leaves)).collect();
            balanced(op, operands).expect("two or more operands")
        }
    }
}

/// sqlparser writes positions as `... at Line: 1, Column: 7`.
fn position_in_message(message: &str) -> Option<Position> {
    let number_after = |key: &str| -> Option<u64> {
        let rest = &message[message.rfind(key)? + key.len()..];
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        digits.parse().ok()
    };
    Some(Position::Text {
        line: number_after("Line: ")?,
        column: number_after("Column: ")?,
    })
}

fn span_position(span: datafusion::sql::sqlparser::tokenizer::Span) -> Position {
    if span.start.line == 0 {
        Position::Unknown
    } else {
        Position::Text {
            line: span.start.line,
            column: span.start.column,
        }
    }
}

/// Walk the parsed SQL: every identifier must be a column; constructs that are not row
/// filters are refused with their position. Returns the first position of each column.
fn check_sql_ast(expr: &sql_ast::Expr, schema: &Schema) -> Result<HashMap<String, Position>> {
    use sql_ast::{BinaryOperator as B, Expr as E};
    let mut columns: HashMap<String, Position> = HashMap::new();
    let flow = sql_ast::visit_expressions(expr, |e| {
        let refuse = |operator: String, position: Position| {
            ControlFlow::Break(Error::UnsupportedOperator { operator, position })
        };
        match e {
            E::Identifier(ident) => {
                let position = span_position(ident.span);
                if schema.field_with_name(&ident.value).is_err() {
                    return ControlFlow::Break(Error::UnknownColumn {
                        column: ident.value.clone(),
                        position,
                        available: available(schema),
                    });
                }
                columns.entry(ident.value.clone()).or_insert(position);
            }
            E::CompoundIdentifier(parts) => {
                let name = parts
                    .iter()
                    .map(|p| p.value.as_str())
                    .collect::<Vec<_>>()
                    .join(".");
                let position = parts
                    .first()
                    .map(|p| span_position(p.span))
                    .unwrap_or(Position::Unknown);
                return ControlFlow::Break(Error::UnknownColumn {
                    column: name,
                    position,
                    available: available(schema),
                });
            }
            E::BinaryOp { op, .. } => {
                let allowed = matches!(
                    op,
                    B::Eq
                        | B::NotEq
                        | B::Lt
                        | B::LtEq
                        | B::Gt
                        | B::GtEq
                        | B::And
                        | B::Or
                        | B::Plus
                        | B::Minus
                        | B::Multiply
                        | B::Divide
                        | B::Modulo
                        | B::StringConcat
                );
                if !allowed {
                    return refuse(op.to_string(), span_position(e.span()));
                }
            }
            E::Subquery(_) | E::Exists { .. } | E::InSubquery { .. } => {
                return refuse("subquery".to_string(), span_position(e.span()));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    });
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(columns),
    }
}

/// Type checks, literal typing, coercion and simplification shared by SQL and DNF.
fn finish(
    expr: Expr,
    sql: &str,
    schema: &Schema,
    df_schema: &DFSchema,
    position: &dyn Fn(&str) -> Position,
) -> Result<Expr> {
    let invalid = |reason: String| Error::InvalidPredicate {
        predicate: shorten(sql),
        reason,
    };
    let expr = rebalance(expr);
    if let Some(bad) = first_unsupported(&expr) {
        return Err(Error::UnsupportedOperator {
            operator: bad,
            position: Position::Unknown,
        });
    }
    let mut failure: Option<Error> = None;
    let typed = expr
        .transform_up(|e| {
            match type_literals(e, schema, df_schema, position) {
                Ok(t) => Ok(t),
                Err(err) => {
                    failure = Some(err);
                    // Stops the walk; the real error is `failure`.
                    Err(DataFusionError::Plan("type check failed".to_string()))
                }
            }
        })
        .map(|t| t.data);
    let typed = match (typed, failure) {
        (_, Some(err)) => return Err(err),
        (Err(e), None) => return Err(invalid(e.strip_backtrace())),
        (Ok(t), None) => t,
    };
    let df_schema = Arc::new(df_schema.clone());
    let simplifier = ExprSimplifier::new(
        SimplifyContext::builder()
            .with_schema(Arc::clone(&df_schema))
            .build(),
    );
    let coerced = simplifier
        .coerce(typed, &df_schema)
        .map_err(|e| invalid(e.strip_backtrace()))?;
    let simplified = simplifier
        .simplify(coerced)
        .map_err(|e| invalid(e.strip_backtrace()))?;
    let data_type = simplified
        .get_type(df_schema.as_ref())
        .map_err(|e| invalid(e.strip_backtrace()))?;
    if !matches!(data_type, DataType::Boolean | DataType::Null) {
        return Err(invalid(format!(
            "the expression is {data_type}, not a boolean condition"
        )));
    }
    // The simplifier can rebuild a chain left-deep (its common-factor rule folds).
    let balanced = rebalance(simplified);
    if depth(&balanced) > MAX_EXPR_DEPTH {
        return Err(Error::PredicateTooLarge {
            reason: format!("nested deeper than {MAX_EXPR_DEPTH} levels once planned"),
        });
    }
    Ok(balanced)
}

fn first_unsupported(expr: &Expr) -> Option<String> {
    let mut found = None;
    let _ = expr.apply(|e| {
        let name = match e {
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) => Some("subquery"),
            Expr::AggregateFunction(_) => Some("aggregate function"),
            Expr::WindowFunction(_) => Some("window function"),
            Expr::Placeholder(_) => Some("placeholder"),
            Expr::OuterReferenceColumn(..) => Some("outer reference"),
            _ if e.is_volatile_node() => Some("volatile function"),
            _ => None,
        };
        if let Some(name) = name {
            found = Some(name.to_string());
            return Ok(datafusion::common::tree_node::TreeNodeRecursion::Stop);
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    found
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Class {
    Numeric,
    Text,
    Boolean,
    Temporal,
    Binary,
    Null,
    Other,
}

fn class(data_type: &DataType) -> Class {
    use DataType as D;
    match data_type {
        D::Null => Class::Null,
        D::Boolean => Class::Boolean,
        t if t.is_numeric() => Class::Numeric,
        D::Utf8 | D::LargeUtf8 | D::Utf8View => Class::Text,
        D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_) => Class::Binary,
        D::Date32
        | D::Date64
        | D::Timestamp(_, _)
        | D::Time32(_)
        | D::Time64(_)
        | D::Duration(_)
        | D::Interval(_) => Class::Temporal,
        D::Dictionary(_, value) => class(value),
        _ => Class::Other,
    }
}

fn literal_of(expr: &Expr) -> Option<ScalarValue> {
    match expr {
        Expr::Literal(v, _) => Some(v.clone()),
        Expr::Negative(inner) => match inner.as_ref() {
            Expr::Literal(v, _) => v.arithmetic_negate().ok(),
            _ => None,
        },
        _ => None,
    }
}

fn describe(value: &ScalarValue) -> String {
    let options = FormatOptions::default();
    let text = value
        .to_array()
        .ok()
        .and_then(|a| {
            arrow::util::display::ArrayFormatter::try_new(a.as_ref(), &options)
                .ok()
                .map(|f| f.value(0).to_string())
        })
        .unwrap_or_else(|| value.to_string());
    match value.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            format!("'{text}' ({})", value.data_type())
        }
        t => format!("{text} ({t})"),
    }
}

/// Check `column <op> value`; returns the literal to use (typed as the column when a
/// string had to be converted).
fn check_literal(
    column: &str,
    column_type: &DataType,
    value: &ScalarValue,
    position: &dyn Fn(&str) -> Position,
) -> Result<Option<ScalarValue>> {
    let mismatch = || Error::TypeMismatch {
        column: column.to_string(),
        expected: column_type.to_string(),
        found: describe(value),
        position: position(column),
    };
    let (c, v) = (class(column_type), class(&value.data_type()));
    if value.is_null() || c == v || c == Class::Other {
        return Ok(None);
    }
    if v == Class::Text && matches!(c, Class::Numeric | Class::Temporal | Class::Boolean) {
        // Strict cast: a string that is not a value of the column's type is an error,
        // where DataFusion's coercion would turn it into a null that matches nothing.
        let options = CastOptions {
            safe: false,
            ..Default::default()
        };
        let target = match column_type {
            DataType::Dictionary(_, inner) => inner.as_ref(),
            t => t,
        };
        return value
            .cast_to_with_options(target, &options)
            .map(Some)
            .map_err(|_| mismatch());
    }
    Err(mismatch())
}

/// A NULL literal, also cast or negated (`CAST(NULL AS INT)`, `-NULL`).
fn is_null_literal(expr: &Expr) -> bool {
    match expr {
        Expr::Literal(v, _) => v.is_null(),
        Expr::Cast(c) => is_null_literal(&c.expr),
        Expr::TryCast(c) => is_null_literal(&c.expr),
        Expr::Negative(inner) => is_null_literal(inner),
        _ => false,
    }
}

/// The error for `operand <operator> NULL`; `suggestion` turns the operand's name into
/// what to write instead.
fn null_comparison(
    operand: &Expr,
    operator: impl Into<String>,
    suggestion: impl Fn(&str) -> String,
    schema: &Schema,
    position: &dyn Fn(&str) -> Position,
) -> Error {
    let (column, position) = match column_type(operand, schema) {
        Some((name, _)) => (name.to_string(), position(name)),
        None => (
            expr_to_sql(operand).unwrap_or_else(|_| operand.to_string()),
            Position::Unknown,
        ),
    };
    Error::NullComparison {
        suggestion: suggestion(&column),
        operator: operator.into(),
        column,
        position,
    }
}

/// Refuse comparisons with NULL: never true, they would silently match nothing.
/// `IS [NOT] DISTINCT FROM NULL` is null-safe and stays allowed.
fn check_null_comparison(
    expr: &Expr,
    schema: &Schema,
    position: &dyn Fn(&str) -> Position,
) -> Result<()> {
    let refuse = |operand: &Expr, operator: String, suggestion: &dyn Fn(&str) -> String| {
        Err(null_comparison(
            operand, operator, suggestion, schema, position,
        ))
    };
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if is_comparison(*op)
                && !matches!(op, Operator::IsDistinctFrom | Operator::IsNotDistinctFrom) =>
        {
            let operand = match (is_null_literal(left), is_null_literal(right)) {
                (_, true) => left,
                (true, false) => right,
                (false, false) => return Ok(()),
            };
            let suggestion = |c: &str| match op {
                Operator::Eq => format!("`{c} IS NULL`"),
                Operator::NotEq => format!("`{c} IS NOT NULL`"),
                _ => format!("`{c} IS NULL` or `{c} IS NOT NULL`"),
            };
            refuse(operand, op.to_string(), &suggestion)
        }
        Expr::InList(in_list) if in_list.list.iter().any(is_null_literal) => {
            let others = in_list
                .list
                .iter()
                .filter(|e| !is_null_literal(e))
                .map(|e| expr_to_sql(e).unwrap_or_else(|_| e.to_string()))
                .collect::<Vec<_>>()
                .join(", ");
            let negated = in_list.negated;
            let suggestion = |c: &str| match (negated, others.is_empty()) {
                (false, true) => format!("`{c} IS NULL`"),
                (false, false) => format!("`{c} IS NULL OR {c} IN ({others})`"),
                (true, true) => format!("`{c} IS NOT NULL`"),
                (true, false) => format!("`{c} IS NOT NULL AND {c} NOT IN ({others})`"),
            };
            let operator = if negated { "NOT IN" } else { "IN" };
            refuse(&in_list.expr, operator.to_string(), &suggestion)
        }
        Expr::Between(between)
            if is_null_literal(&between.low) || is_null_literal(&between.high) =>
        {
            let suggestion = |c: &str| format!("`{c} IS NULL` or `{c} IS NOT NULL`");
            refuse(&between.expr, "BETWEEN".to_string(), &suggestion)
        }
        Expr::Like(like) if is_null_literal(&like.pattern) => {
            let suggestion = |c: &str| format!("`{c} IS NULL` or `{c} IS NOT NULL`");
            refuse(&like.expr, "LIKE".to_string(), &suggestion)
        }
        _ => Ok(()),
    }
}

fn is_comparison(op: Operator) -> bool {
    matches!(
        op,
        Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::IsDistinctFrom
            | Operator::IsNotDistinctFrom
    )
}

fn column_type<'a>(expr: &'a Expr, schema: &'a Schema) -> Option<(&'a str, &'a DataType)> {
    match expr {
        Expr::Column(c) => schema
            .field_with_name(&c.name)
            .ok()
            .map(|f| (c.name.as_str(), f.data_type())),
        _ => None,
    }
}

fn type_literals(
    expr: Expr,
    schema: &Schema,
    df_schema: &DFSchema,
    position: &dyn Fn(&str) -> Position,
) -> Result<Transformed<Expr>> {
    let replace = |old: Box<Expr>, new: Option<ScalarValue>| match new {
        Some(v) => Box::new(lit(v)),
        None => old,
    };
    check_null_comparison(&expr, schema, position)?;
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) if is_comparison(op) => {
            if let (Some((name, t)), Some(v)) = (column_type(&left, schema), literal_of(&right)) {
                let new = check_literal(name, t, &v, position)?;
                let right = replace(right, new);
                return Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr {
                    left,
                    op,
                    right,
                })));
            }
            if let (Some(v), Some((name, t))) = (literal_of(&left), column_type(&right, schema)) {
                let new = check_literal(name, t, &v, position)?;
                let left = replace(left, new);
                return Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr {
                    left,
                    op,
                    right,
                })));
            }
            check_expressions(&left, &right, schema, df_schema, position)?;
            Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
                left,
                op,
                right,
            })))
        }
        Expr::InList(mut in_list) => {
            if let Some((name, t)) = column_type(&in_list.expr, schema) {
                for item in in_list.list.iter_mut() {
                    if let Some(v) = literal_of(item)
                        && let Some(new) = check_literal(name, t, &v, position)?
                    {
                        *item = lit(new);
                    }
                }
            }
            Ok(Transformed::yes(Expr::InList(in_list)))
        }
        Expr::Between(mut between) => {
            if let Some((name, t)) = column_type(&between.expr, schema) {
                for bound in [&mut between.low, &mut between.high] {
                    if let Some(v) = literal_of(bound)
                        && let Some(new) = check_literal(name, t, &v, position)?
                    {
                        **bound = lit(new);
                    }
                }
            }
            Ok(Transformed::yes(Expr::Between(between)))
        }
        other => Ok(Transformed::no(other)),
    }
}

/// Two non-literal operands: refuse comparisons DataFusion would answer by a string cast
/// (a number column against a text column) rather than by value.
fn check_expressions(
    left: &Expr,
    right: &Expr,
    schema: &Schema,
    df_schema: &DFSchema,
    position: &dyn Fn(&str) -> Position,
) -> Result<()> {
    let (Ok(lt), Ok(rt)) = (left.get_type(df_schema), right.get_type(df_schema)) else {
        return Ok(());
    };
    let (lc, rc) = (class(&lt), class(&rt));
    let incompatible = |a: Class, b: Class| {
        matches!(
            (a, b),
            (Class::Numeric, Class::Text)
                | (Class::Numeric, Class::Boolean)
                | (Class::Text, Class::Boolean)
                | (Class::Numeric, Class::Temporal)
                | (Class::Boolean, Class::Temporal)
        )
    };
    if !(incompatible(lc, rc) || incompatible(rc, lc)) {
        return Ok(());
    }
    let (column, expected, other, found) =
        match (column_type(left, schema), column_type(right, schema)) {
            (Some((name, _)), _) => (name.to_string(), lt, right, rt),
            (None, Some((name, _))) => (name.to_string(), rt, left, lt),
            (None, None) => (left.to_string(), lt, right, rt),
        };
    Err(Error::TypeMismatch {
        position: position(&column),
        column,
        expected: expected.to_string(),
        found: format!("{other} ({found})"),
    })
}

/// Convert a JSON value to a literal for a DNF term on a column of `data_type`.
fn json_literal(
    column: &str,
    data_type: &DataType,
    value: &serde_json::Value,
    position: &Position,
) -> Result<ScalarValue> {
    use serde_json::Value as J;
    let scalar = match value {
        J::Null => ScalarValue::Null,
        J::Bool(b) => ScalarValue::Boolean(Some(*b)),
        J::String(s) => ScalarValue::Utf8(Some(s.clone())),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                ScalarValue::Int64(Some(i))
            } else if let Some(u) = n.as_u64() {
                ScalarValue::UInt64(Some(u))
            } else {
                ScalarValue::Float64(n.as_f64())
            }
        }
        J::Array(_) | J::Object(_) => {
            return Err(Error::TypeMismatch {
                column: column.to_string(),
                expected: data_type.to_string(),
                found: format!(
                    "{value} (JSON {})",
                    if value.is_array() { "array" } else { "object" }
                ),
                position: position.clone(),
            });
        }
    };
    let fixed = position.clone();
    let typed = check_literal(column, data_type, &scalar, &|_| fixed.clone())?;
    Ok(typed.unwrap_or(scalar))
}

fn dnf_term(
    column: &str,
    data_type: &DataType,
    op: Op,
    value: &serde_json::Value,
    position: &Position,
) -> Result<Expr> {
    let col = Expr::Column(datafusion::common::Column::new_unqualified(column));
    if op == Op::In {
        let serde_json::Value::Array(items) = value else {
            return Err(Error::TypeMismatch {
                column: column.to_string(),
                expected: format!("a JSON array of {data_type} values for `in`"),
                found: value.to_string(),
                position: position.clone(),
            });
        };
        let list = items
            .iter()
            .map(|v| json_literal(column, data_type, v, position).map(lit))
            .collect::<Result<Vec<_>>>()?;
        return Ok(col.in_list(list, false));
    }
    let scalar = json_literal(column, data_type, value, position)?;
    if scalar.is_null() {
        // kartothek semantics: `== None` selects nulls, `!= None` non-nulls.
        return match op {
            Op::Eq => Ok(col.is_null()),
            Op::NotEq => Ok(col.is_not_null()),
            _ => Err(Error::UnsupportedOperator {
                operator: format!("{op:?} with null"),
                position: position.clone(),
            }),
        };
    }
    let value = lit(scalar);
    Ok(match op {
        Op::Eq => col.eq(value),
        Op::NotEq => col.not_eq(value),
        Op::Lt => col.lt(value),
        Op::LtEq => col.lt_eq(value),
        Op::Gt => col.gt(value),
        Op::GtEq => col.gt_eq(value),
        Op::In => unreachable!("handled above"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("c", DataType::Float64, true),
            Field::new("d", DataType::Date32, true),
            Field::new("Mixed", DataType::Int32, true),
        ])
    }

    #[test]
    fn parses_and_types() {
        let p = Predicate::parse(
            "a = 2 AND b IN ('x','y') OR c > 1.5 AND d IS NOT NULL",
            &schema(),
        )
        .unwrap();
        assert_eq!(p.columns(), vec!["a", "b", "c", "d"]);
        let p = Predicate::parse("d >= '2024-01-31' AND Mixed < 3", &schema()).unwrap();
        assert!(p.expr().to_string().contains("Date32"), "{}", p.expr());
    }

    #[test]
    fn wrong_type_is_refused_with_position() {
        let err = Predicate::parse("b = 'y' AND a = 'x'", &schema()).unwrap_err();
        match err {
            Error::TypeMismatch {
                column, position, ..
            } => {
                assert_eq!(column, "a");
                assert_eq!(
                    position,
                    Position::Text {
                        line: 1,
                        column: 13
                    }
                );
            }
            other => panic!("{other}"),
        }
        assert!(matches!(
            Predicate::parse("b = 3", &schema()),
            Err(Error::TypeMismatch { .. })
        ));
        assert!(matches!(
            Predicate::parse("a = b", &schema()),
            Err(Error::TypeMismatch { .. })
        ));
        assert!(matches!(
            Predicate::parse("d = 'not a date'", &schema()),
            Err(Error::TypeMismatch { .. })
        ));
    }

    #[test]
    fn unknown_column_names_position() {
        let err = Predicate::parse("a = 1 AND\n  zz > 3", &schema()).unwrap_err();
        match &err {
            Error::UnknownColumn {
                column, position, ..
            } => {
                assert_eq!(column, "zz");
                assert_eq!(*position, Position::Text { line: 2, column: 3 });
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("line 2, column 3"), "{err}");
    }

    #[test]
    fn syntax_and_operator_errors() {
        let err = Predicate::parse("a = = 1", &schema()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Syntax {
                    position: Position::Text { line: 1, .. },
                    ..
                }
            ),
            "{err:?}"
        );
        let err = Predicate::parse("b ~ 'x'", &schema()).unwrap_err();
        assert!(matches!(err, Error::UnsupportedOperator { .. }), "{err:?}");
        let err = Predicate::parse("a + 1", &schema()).unwrap_err();
        assert!(matches!(err, Error::InvalidPredicate { .. }), "{err:?}");
        let err = Predicate::parse("random() < 0.5", &schema()).unwrap_err();
        assert!(matches!(err, Error::UnsupportedOperator { .. }), "{err:?}");
        assert!(Predicate::parse("  ", &schema()).is_err());
    }

    /// Regression: `origin = NULL` parsed, was never true, and `delete` / `query` matched
    /// nothing without a word.
    #[test]
    fn comparison_with_null_is_refused_with_is_null_suggested() {
        let refused = |sql: &str| match Predicate::parse(sql, &schema()) {
            Err(Error::NullComparison {
                column,
                operator,
                suggestion,
                position,
            }) => (column, operator, suggestion, position),
            other => panic!("{sql}: {other:?}"),
        };
        let (column, operator, suggestion, position) = refused("a = 1 OR b = NULL");
        assert_eq!((column.as_str(), operator.as_str()), ("b", "="));
        assert_eq!(suggestion, "`b IS NULL`");
        assert_eq!(
            position,
            Position::Text {
                line: 1,
                column: 10
            }
        );
        assert_eq!(refused("b != NULL").2, "`b IS NOT NULL`");
        assert_eq!(refused("b <> NULL").2, "`b IS NOT NULL`");
        assert_eq!(refused("NULL = a").0, "a");
        assert_eq!(refused("a = CAST(NULL AS BIGINT)").0, "a");
        assert_eq!(refused("c < NULL").1, "<");
        assert_eq!(refused("d >= NULL").0, "d");
        assert_eq!(refused("b IN (NULL)").2, "`b IS NULL`");
        assert_eq!(refused("b IN ('x', NULL)").2, "`b IS NULL OR b IN ('x')`");
        assert_eq!(
            refused("b NOT IN ('x', NULL)").2,
            "`b IS NOT NULL AND b NOT IN ('x')`"
        );
        assert_eq!(refused("a BETWEEN NULL AND 3").1, "BETWEEN");
        assert_eq!(refused("b LIKE NULL").1, "LIKE");
        assert_eq!(refused("NOT (Mixed = NULL)").0, "Mixed");
        let message = Predicate::parse("b = NULL", &schema())
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("\"b\"") && message.contains("b IS NULL"),
            "{message}"
        );
        // DNF lists get the same check; `== None` is kartothek's IS NULL and stays.
        let dnf: Dnf = serde_json::from_str(r#"[[["b", "in", ["x", null]]]]"#).unwrap();
        assert!(matches!(
            Predicate::from_dnf(&dnf, &schema()),
            Err(Error::NullComparison { .. })
        ));
        // What is meant is still accepted, and so are the null-safe comparisons.
        for sql in [
            "b IS NULL",
            "b IS NOT NULL",
            "b IS NOT DISTINCT FROM NULL",
            "(b IS DISTINCT FROM NULL) OR a IN (1, 2)",
        ] {
            Predicate::parse(sql, &schema()).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    #[test]
    fn dnf_matches_sql() {
        let dnf: Dnf = serde_json::from_str(
            r#"[[["a", "==", 2], ["b", "in", ["x", "y"]]], [["c", ">", 1.5], ["d", "!=", null]]]"#,
        )
        .unwrap();
        let p = Predicate::from_dnf(&dnf, &schema()).unwrap();
        let q = Predicate::parse(
            "a = 2 AND b IN ('x','y') OR c > 1.5 AND d IS NOT NULL",
            &schema(),
        )
        .unwrap();
        assert_eq!(p.expr(), q.expr());
        // The generated text parses back to the same expression.
        assert_eq!(Predicate::parse(p.sql(), &schema()).unwrap(), p);
        let text = serde_json::to_string(&dnf).unwrap();
        assert_eq!(serde_json::from_str::<Dnf>(&text).unwrap(), dnf);
    }

    #[test]
    fn dnf_errors_name_the_term() {
        let dnf: Dnf = serde_json::from_str(r#"[[["a", "==", 1]], [["a", "==", "x"]]]"#).unwrap();
        let err = Predicate::from_dnf(&dnf, &schema()).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::TypeMismatch {
                    position: Position::Dnf {
                        conjunction: 1,
                        term: 0
                    },
                    ..
                }
            ),
            "{err:?}"
        );
        let dnf: Dnf = serde_json::from_str(r#"[[["nope", "==", 1]]]"#).unwrap();
        assert!(matches!(
            Predicate::from_dnf(&dnf, &schema()),
            Err(Error::UnknownColumn { .. })
        ));
        assert!(serde_json::from_str::<Dnf>(r#"[[["a", "like", 1]]]"#).is_err());
    }
}
